"""The webhook schedule in the database: an attempt at most once per event and number, every
attempt recorded (refused, malformed, TLS), Retry-After honoured, exhausted events listed and
redelivered. Real PostgreSQL and Redis; the steps run in this process (no worker)."""

import json
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis

from shared.db import session_scope
from shared.models import Job, WebhookEndpoint
from shared.pipeline import Message, Step
from shared.tenants import create_api_key, create_tenant
from shared.webhooks.delivery import deliver
from shared.webhooks.schedule import due_attempts
from tests.helpers import auth
from tests.webhooks.helpers import ScriptedReceiver, attempts_of, event_of, finished_job
from tests.webhooks.tls import tls_server


@pytest.fixture()
def tenant(settings):
    with session_scope(settings.database_url) as s:
        return create_tenant(s, name=f"t{uuid.uuid4().hex[:8]}")


def test_a_duplicate_message_finds_the_attempt_recorded_and_stops(settings, store, tenant):
    receiver = ScriptedReceiver()
    job_id = finished_job(settings, store, tenant, receiver.url)
    twins = [threading.Thread(target=deliver, args=(settings, Job, job_id, 1)) for _ in range(2)]
    for t in twins:
        t.start()
    for t in twins:
        t.join()
    deliver(settings, Job, job_id, 1)  # Redis hands the same message out again
    deliver(settings, Job, job_id, 2)  # an attempt nobody claimed
    receiver.close()
    assert receiver.received == [(f"msg_{uuid.UUID(job_id).hex}", 200)]
    assert attempts_of(settings, job_id) == [(1, 200, None)]
    assert event_of(settings, job_id).state == "delivered"


def test_a_lost_first_message_is_sent_again_under_its_number_after_the_lease(settings, store, tenant):
    short = settings.model_copy(update={"webhook_attempt_lease_s": 0.1})
    receiver = ScriptedReceiver()
    job_id = finished_job(short, store, tenant, receiver.url)  # its first message never arrives
    assert due_attempts(short) == []  # leased
    time.sleep(0.2)
    assert due_attempts(short) == [Message(Step.DELIVER, (job_id, 1))]
    deliver(short, Job, job_id, 1)
    receiver.close()
    assert [(n, status) for n, status, _ in attempts_of(short, job_id)] == [(1, 200)]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_malformed_url_and_tls_errors_are_recorded_attempts(settings, store, tenant, tmp_path):
    bad = "http://127.0.0.1:9/a\r\nX-Injected: 1"  # refused at registration; an older row may hold one
    with session_scope(settings.database_url) as s:
        s.add(WebhookEndpoint(tenant_id=tenant.id, url=bad, secrets={"current": "whsec_" + "A" * 44}, enabled=True))
    malformed = finished_job(settings, store, tenant, bad, register=False)
    deliver(settings, Job, malformed, 1)
    ((number, status, error),) = attempts_of(settings, malformed)
    assert (number, status) == (1, None) and error.startswith("InvalidURL")
    assert event_of(settings, malformed).state == "failed"  # not retried

    with tls_server(tmp_path) as server:  # a self-signed certificate
        tls = finished_job(settings, store, tenant, f"https://127.0.0.1:{server.port}/hook")
        deliver(settings, Job, tls, 1)
    ((_, status, error),) = attempts_of(settings, tls)
    assert status is None and error.startswith("ConnectError") and "CERTIFICATE_VERIFY_FAILED" in error
    assert event_of(settings, tls).state == "pending"  # retried


def test_retry_after_beyond_the_visibility_timeout_pushes_the_due_time(settings, store, tenant):
    receiver = ScriptedReceiver((429, {"Retry-After": "120"}))
    job_id = finished_job(settings, store, tenant, receiver.url)
    deliver(settings, Job, job_id, 1)
    receiver.close()
    event = event_of(settings, job_id)
    assert event.state == "pending" and event.next_attempt_at >= datetime.now(UTC) + timedelta(seconds=110)
    assert due_attempts(settings) == []  # not due: no message waits anywhere meanwhile


def test_an_exhausted_event_is_listed_and_redelivered(settings, store, tenant, client):
    fast = settings.model_copy(update={"webhook_retry_schedule_s": "0.05", "webhook_jitter": 0.0})
    receiver = ScriptedReceiver((503, {}), (503, {}))
    job_id = finished_job(fast, store, tenant, receiver.url)
    deliver(fast, Job, job_id, 1)
    time.sleep(0.1)
    assert due_attempts(fast) == [Message(Step.DELIVER, (job_id, 2))]
    deliver(fast, Job, job_id, 2)
    assert event_of(fast, job_id).state == "exhausted" and due_attempts(fast) == []

    with session_scope(settings.database_url) as s:
        _, key = create_api_key(s, tenant=s.merge(tenant))
    (listed,) = client.get("/v1/webhooks/events?state=exhausted", headers=auth(key)).json()
    assert listed["job_id"] == job_id and listed["attempts"] == 2
    broker = redis.Redis.from_url(settings.redis_url)
    broker.delete("webhooks")
    r = client.post(f"/v1/webhooks/events/{listed['id']}/redeliver", headers=auth(key))
    assert r.status_code == 202
    (sent,) = [json.loads(m)["headers"] for m in broker.lrange("webhooks", 0, -1)]
    assert (sent["task"], sent["argsrepr"]) == (Step.DELIVER, repr([job_id, 0]))
    deliver(fast, Job, job_id, 0)  # what the worker does with it: a new series
    receiver.close()
    assert [(n, status) for n, status, _ in attempts_of(fast, job_id)] == [(1, 503), (2, 503), (3, 200)]
    assert event_of(fast, job_id).state == "delivered"
    other = client.post(f"/v1/webhooks/events/{uuid.uuid4()}/redeliver", headers=auth(key))
    assert other.status_code == 404
