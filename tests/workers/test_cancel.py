"""A job cancelled while queued ends at once and notifies like any finished job: its webhook, or
for an audit's defense job, the audit item's progress. Real PostgreSQL, Redis, S3 and worker
processes; no GPU worker, so the jobs stay queued."""

import time
import uuid

from sqlalchemy import select

from shared.audits.store import create_defense_jobs, items_of, spec_of
from shared.db import session_scope
from shared.jobs.store import now
from shared.models import Audit, AuditItem, Job
from shared.tools.receiver import Receiver
from tests.helpers import auth, post_job


def wait_until(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_a_queued_job_cancelled_gets_its_webhook(client, keys, spawn_worker):
    spawn_worker(("webhooks",))
    key = keys["alpha"]
    with Receiver() as receiver:
        receiver.secret = client.post("/v1/webhooks", headers=auth(key), json={"url": receiver.url}).json()["secret"]
        job_id = post_job(client, key, callback_url=receiver.url).json()["id"]
        r = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))
        assert r.status_code == 202 and r.json()["status"] == "cancelled"
        (hook,) = receiver.wait(1, timeout=30)
    assert hook.verified and hook.json["data"]["job_id"] == job_id and hook.json["data"]["status"] == "cancelled"
    (delivery,) = client.get(f"/v1/jobs/{job_id}/deliveries", headers=auth(key)).json()
    assert delivery["status_code"] == 200


def test_an_audit_defense_job_cancelled_while_queued_moves_its_item_on(client, keys, spawn_worker, settings):
    spawn_worker(("cpu", "audits"))  # prepares the audit; its first chunk waits for a GPU worker
    key = keys["alpha"]
    spec = {
        "dataset": {"format": "shapes", "seed": 7, "count": 1},  # 1 image, 2 questions, one chunk
        "attacks": [{"name": "pgd", "steps": 1}],
        "defense": {"sigmas": [0.1], "num_samples": 2, "max_new_tokens": 4},
    }
    audit_id = client.post("/v1/audits", headers=auth(key), json=spec).json()["id"]
    wait_until(lambda: client.get(f"/v1/audits/{audit_id}", headers=auth(key)).json()["status"] == "running")
    jobs = attacked_by_hand(settings.database_url, audit_id)  # as the chunk would, without sending its jobs
    for job_id in jobs:
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key)).json()["status"] == "cancelled"
    audit = wait_until(
        lambda: (a := client.get(f"/v1/audits/{audit_id}", headers=auth(key)).json())["progress"]["done"] == 1 and a,
        what="the item to be done",
    )
    assert audit["status"] == "running" and audit["progress"]["total"] == 2  # the other item still waits
    with session_scope(settings.database_url) as s:
        finished = s.scalars(select(AuditItem.finished_at).where(AuditItem.audit_id == uuid.UUID(audit_id))).all()
    assert sum(f is not None for f in finished) == 1


def attacked_by_hand(database, audit_id):
    """The first item's variants stored (the clean image for each) and its defense jobs created,
    queued; returns their ids."""
    with session_scope(database) as s:
        audit = s.get(Audit, uuid.UUID(audit_id))
        item = items_of(s, audit.id)[0]
        item.outputs = {v: {"media_id": str(item.media_id), "answer": "x"} for v in spec_of(audit).variants()}
        item.attacked_at = now()
        jobs = create_defense_jobs(s, audit, item)
    with session_scope(database) as s:
        assert all(s.get(Job, j).status == "queued" for j in jobs) and len(jobs) == 2
    return [str(j) for j in jobs]
