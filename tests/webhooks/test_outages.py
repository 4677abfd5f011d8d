"""Outages webhooks ride out: a receiver down for minutes (scaled), the broker restarted under a
running webhooks worker. Real PostgreSQL, Redis, S3 and worker processes."""

import time
import uuid

import pytest

from shared.db import session_scope
from shared.pipeline import Message, Step
from shared.tenants import create_tenant
from shared.tools.servers import free_port
from tests.webhooks.helpers import ScriptedReceiver, attempts_of, event_of, finished_job

# 1:100 — a receiver down for "5 minutes" is down 3 s; the retry steps (0.2 s, 1 s, 3 s) include one
# longer than the broker's visibility timeout (2 s), what made Redis hand countdown retries out twice
SCALED = {
    "SMOOTHGUARD_WEBHOOK_RETRY_SCHEDULE_S": "0.2,1,3",
    "SMOOTHGUARD_WEBHOOK_JITTER": "0.1",
    "SMOOTHGUARD_WEBHOOK_POLL_S": "0.2",
    "SMOOTHGUARD_BROKER_VISIBILITY_TIMEOUT_S": "2",
}


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def new_tenant(settings):
    with session_scope(settings.database_url) as s:
        return create_tenant(s, name=f"t{uuid.uuid4().hex[:8]}")


def test_a_receiver_down_for_5_minutes_scaled_gets_each_event_exactly_once(settings, store, spawn_worker, queue):
    spawn_worker(("webhooks", "beat"), **SCALED)
    port, tenant = free_port(), new_tenant(settings)
    url = f"http://127.0.0.1:{port}/hook"  # nothing listens yet
    jobs = [finished_job(settings, store, tenant, url, register=i == 0) for i in range(3)]
    queue.send([Message(Step.DELIVER, (job_id, 1)) for job_id in jobs])
    wait_until(lambda: all(attempts_of(settings, j) for j in jobs), 30, "the first attempts")
    time.sleep(3.0)  # down "5 minutes" from the first attempts
    receiver = ScriptedReceiver(port=port)
    wait_until(lambda: all(event_of(settings, j).state == "delivered" for j in jobs), 15, "the deliveries")
    time.sleep(3.0)  # past the visibility timeout: a message handed out again would deliver again by now
    receiver.close()
    assert sorted(receiver.received) == sorted((f"msg_{uuid.UUID(j).hex}", 200) for j in jobs)  # once each
    for job_id in jobs:
        made = attempts_of(settings, job_id)
        assert [n for n, _, _ in made] == [1, 2, 3, 4]  # the 3 s step waited in the database
        assert all(e.startswith("ConnectError") for _, _, e in made[:3]) and made[3][1:] == (200, None)


@pytest.mark.chaos
def test_the_webhooks_worker_survives_a_redis_restart_and_delivers_afterwards(
    settings, store, stack, spawn_worker, queue
):
    worker = spawn_worker(("webhooks",))
    receiver, tenant = ScriptedReceiver(delay_s=2.0), new_tenant(settings)
    first, second = (finished_job(settings, store, tenant, receiver.url, register=i == 0) for i in range(2))
    queue.send([Message(Step.DELIVER, (first, 1))])
    wait_until(lambda: receiver.arrived, 30, "the first attempt")  # in flight: its message unacked
    stack.redis.process.kill()
    stack.redis.process.wait(10)
    time.sleep(1.0)
    stack.redis.start()  # same port, same data
    wait_until(lambda: event_of(settings, first).state == "delivered", 15, "the first delivery")
    queue.send([Message(Step.DELIVER, (second, 1))])
    wait_until(lambda: event_of(settings, second).state == "delivered", 20, "a delivery after the restart")
    receiver.close()
    assert worker.poll() is None
    assert [a[1] for a in attempts_of(settings, first)] == [200] == [a[1] for a in attempts_of(settings, second)]
