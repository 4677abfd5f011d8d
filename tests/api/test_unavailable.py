"""A backing service down answers 503 problem+json with Retry-After, not a 500 — except a submit
while the queue is down: the job is committed (the outbox) and accepted, and the next dispatch
sends it once the queue is back."""

import time
import uuid

from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import DEMO_IMAGE
from shared.db import session_scope
from shared.models import Job
from shared.pipeline import Message, Step
from tests.helpers import auth, wait_finished

DEAD = "127.0.0.1:1"  # nothing listens on port 1


def submit(client, key, idempotency_key):
    files = {"file": ("x.png", DEMO_IMAGE.read_bytes(), "image/png")}
    headers = auth(key) | {"Idempotency-Key": idempotency_key}
    data = {"prompt": "What colour is the circle?", "num_samples": "3"}
    return client.post("/v1/jobs", headers=headers, files=files, data=data)


def test_queue_down_at_submit_the_job_is_accepted_and_sent_by_the_next_dispatch(settings, keys, client, worker, queue):
    key = keys["alpha"]
    down = TestClient(create_app(settings.model_copy(update={"redis_url": f"redis://{DEAD}/0"})))
    started = time.monotonic()
    r = submit(down, key, "outbox")
    assert r.status_code == 202, r.text
    assert time.monotonic() - started < 30
    with session_scope(settings.database_url) as s:  # committed, waiting in the outbox
        assert s.get(Job, uuid.UUID(r.json()["id"])).dispatched_at is None
    time.sleep(2)
    assert client.get(f"/v1/jobs/{r.json()['id']}", headers=auth(key)).json()["status"] == "queued"
    queue.send([Message(Step.DISPATCH)])  # what the beat sends every dispatch_interval_s
    body = wait_finished(client, key, r.json()["id"], timeout=120)
    assert body["status"] in ("succeeded", "abstained") and body["samples_spent"] == 4
    again = submit(client, key, "outbox")  # a client retry is a replay, and sends nothing twice
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"


def test_database_down_is_a_503_with_retry_after(settings, keys):
    down = TestClient(create_app(settings.model_copy(update={"database_url": f"postgresql://postgres@{DEAD}/x"})))
    r = down.get("/v1/jobs", headers=auth(keys["alpha"]))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
    assert r.json()["title"] == "Service Unavailable"
