"""Dispatching (``shared.jobs.dispatch``) on a real PostgreSQL and Redis: a tenant's jobs beyond its
slots wait in the database, not on the GPU queue; a freed slot takes the next; through the
service, one tenant's backlog does not hold another tenant's first job behind it."""

import uuid
from datetime import timedelta

import redis
from sqlalchemy import select

from shared.config import DEMO_IMAGE
from shared.db import session_scope
from shared.jobs.dispatch import dispatch
from shared.jobs.store import create_job, now
from shared.media.store import save_media
from shared.models import Job
from shared.smoothing import SmoothConfig
from shared.tenants import create_tenant
from tests.helpers import audit_item, auth, wait_finished


def jobs_of(database, store, count, audits=0):
    """``count`` waiting jobs of a new tenant, the first ``audits`` of them an audit's defense jobs."""
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        media = save_media(
            s, store, tenant_id=tenant.id, data=DEMO_IMAGE.read_bytes(), content_type="image/png", modality="image"
        )
        item = audit_item(s, tenant.id, media.id) if audits else None
        made = [create_job(s, media=media, prompt="p", model="m", config=SmoothConfig()) for _ in range(count)]
        for i, job in enumerate(made):  # submitted one after another (one transaction shares its now())
            job.created_at = now() + timedelta(milliseconds=i)
            if i < audits:
                job.audit_item_id, job.audit_ref = item.id, f"v{i}@0.5"
        return tenant.id, [j.id for j in made]


def dispatched(database, ids):
    with session_scope(database) as s:
        return [s.get(Job, i).dispatched_at is not None for i in ids]


def test_jobs_beyond_a_tenants_slots_wait_in_the_database_and_a_freed_slot_takes_the_next(settings, store, queue):
    broker = redis.Redis.from_url(settings.redis_url)
    broker.flushall()
    s = settings.model_copy(update={"tenant_max_dispatched": 3})
    busy, busy_jobs = jobs_of(s.database_url, store, 10)
    _, other_jobs = jobs_of(s.database_url, store, 1)
    assert dispatch(s, queue) == 4  # three of the busy tenant's, the other tenant's one
    assert broker.llen("gpu") == 4
    assert dispatched(s.database_url, busy_jobs) == [True] * 3 + [False] * 7  # oldest first
    assert dispatched(s.database_url, other_jobs) == [True]
    assert dispatch(s, queue) == 0 and broker.llen("gpu") == 4  # no free slot: nothing more
    with session_scope(s.database_url) as session:
        session.get(Job, busy_jobs[0]).status, session.get(Job, busy_jobs[0]).finished_at = "succeeded", now()
    assert dispatch(s, queue, busy) == 1 and dispatched(s.database_url, busy_jobs)[3]


def test_a_tenants_audit_does_not_hold_its_interactive_jobs_in_the_database(settings, store, queue):
    broker = redis.Redis.from_url(settings.redis_url)
    broker.flushall()
    s = settings.model_copy(update={"tenant_max_dispatched": 3})
    _, jobs = jobs_of(s.database_url, store, 12, audits=10)  # ten audit jobs submitted first, then two interactive
    assert dispatch(s, queue) == 5  # three audit jobs (their lane's slots) and both interactive jobs
    assert dispatched(s.database_url, jobs) == [True] * 3 + [False] * 7 + [True, True]
    assert (broker.llen("gpu-audits"), broker.llen("gpu")) == (3, 2)


def test_one_tenants_backlog_does_not_hold_another_tenants_first_job_behind_it(settings, keys, spawn_worker):
    from fastapi.testclient import TestClient

    from api.main import create_app

    cap = 2
    spawn_worker(("gpu", "cpu"), SMOOTHGUARD_TENANT_MAX_DISPATCHED=str(cap))
    client = TestClient(create_app(settings.model_copy(update={"tenant_max_dispatched": cap})))
    form = {"prompt": "What colour is the circle?", "num_samples": "3"}
    files = {"file": ("x.png", DEMO_IMAGE.read_bytes(), "image/png")}
    backlog = [
        client.post("/v1/jobs", headers=auth(keys["alpha"]), files=files, data=form).json()["id"] for _ in range(16)
    ]
    first = client.post("/v1/jobs", headers=auth(keys["beta"]), files=files, data=form).json()["id"]
    done = wait_finished(client, keys["beta"], first, timeout=120)
    with session_scope(settings.database_url) as s:
        ahead = s.scalars(
            select(Job.id).where(
                Job.id.in_([uuid.UUID(b) for b in backlog]), Job.finished_at < s.get(Job, uuid.UUID(first)).finished_at
            )
        ).all()
    print(f"{len(ahead)} of the other tenant's 10 jobs finished before this tenant's first")
    assert done["status"] in ("succeeded", "abstained")
    assert len(ahead) <= cap + 3  # FIFO without slots: all 10 would be ahead
    for job_id in backlog:  # and the backlog still drains
        wait_finished(client, keys["alpha"], job_id, timeout=120)
