"""The webhook schedule tests' receiver (scripted answers, a port of its choosing, a delay) and
finished jobs with their events."""

import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from shared.config import DEMO_IMAGE
from shared.db import session_scope
from shared.jobs.store import create_job, mark_cancelled
from shared.media.store import save_media
from shared.models import Delivery, WebhookEvent
from shared.smoothing import SmoothConfig
from shared.webhooks.endpoints import register_endpoint
from shared.webhooks.schedule import schedule_webhook


class ScriptedReceiver:
    """Serves on 127.0.0.1 (``port``, else a free one); answers ``script`` in turn (status, headers),
    then 200, each after ``delay_s``; records (webhook-id, status) once it has answered and, in
    ``arrived``, each request as it comes."""

    def __init__(self, *script, port=0, delay_s=0.0):
        self.script, self.received, self.arrived = list(script), [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.arrived.append(self.headers["webhook-id"])
                time.sleep(delay_s)
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                receiver.received.append((self.headers["webhook-id"], status))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def finished_job(settings, store, tenant, url, *, register=True):
    """A job that ended (cancelled) with ``url`` as its callback, its webhook event scheduled."""
    with session_scope(settings.database_url) as s:
        if register:
            register_endpoint(s, settings, tenant.id, url)
        media = save_media(
            s, store, tenant_id=tenant.id, data=DEMO_IMAGE.read_bytes(), content_type="image/png", modality="image"
        )
        job = create_job(s, media=media, prompt="?", model="m", config=SmoothConfig(), callback_url=url)
        s.flush()
        mark_cancelled(job)
        schedule_webhook(s, settings, job)
        return str(job.id)


def attempts_of(settings, job_id):
    with session_scope(settings.database_url) as s:
        rows = s.scalars(select(Delivery).where(Delivery.job_id == uuid.UUID(job_id)).order_by(Delivery.attempt))
        return [(d.attempt, d.status_code, d.error) for d in rows]


def event_of(settings, job_id):
    with session_scope(settings.database_url) as s:
        return s.scalar(select(WebhookEvent).where(WebhookEvent.job_id == uuid.UUID(job_id)))
