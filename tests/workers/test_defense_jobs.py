"""A defense job through real services: PostgreSQL, Redis, an S3 server and a Celery worker
process consuming the ``gpu`` and ``cpu`` queues, with the bundled demo model."""

import time
import uuid

from sqlalchemy import select

from shared.config import DEMO_IMAGE, DEMO_MODEL
from shared.db import session_scope
from shared.jobs.store import create_job
from shared.media.store import save_media
from shared.models import Job, SampleRow
from shared.pipeline import Message, Step
from shared.smoothing import SmoothConfig
from shared.tenants import create_tenant


def submit(database, store, prompt, config):
    data = DEMO_IMAGE.read_bytes()
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        media = save_media(s, store, tenant_id=tenant.id, data=data, content_type="image/png", modality="image")
        job = create_job(s, media=media, prompt=prompt, model=str(DEMO_MODEL), config=config)
        return str(job.id)


def wait_done(database, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(database) as s:
            job = s.get(Job, uuid.UUID(job_id))
            if job.finished_at is not None:
                return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} not finished")


def test_job_runs_through_gpu_and_cpu_workers(database, queue, store, worker):
    job_id = submit(database, store, "What colour is the circle?", SmoothConfig(seed=5))
    queue.send([Message(Step.SAMPLE_ROUND, (job_id, 0))])
    job = wait_done(database, job_id)
    assert job.status == "succeeded" and job.result["answer"] == "red"
    assert job.result["samples_spent"] == 11 and job.result["stop_reason"] == "fixed"
    with session_scope(database) as s:
        rows = s.scalars(select(SampleRow).where(SampleRow.job_id == job.id).order_by(SampleRow.index)).all()
        assert [r.index for r in rows] == list(range(11)) and rows[0].is_clean and rows[0].seed is None
        assert all(r.cluster is not None for r in rows) and sum(r.selected for r in rows) == 1


def test_adaptive_job_goes_back_to_the_gpu_queue_until_decided(database, queue, store, worker):
    config = SmoothConfig(adaptive=True, num_samples=24, round_size=4, sigma=4.0, seed=1)
    job_id = submit(database, store, "What colour is the triangle?", config)
    queue.send([Message(Step.SAMPLE_ROUND, (job_id, 0))])
    job = wait_done(database, job_id)
    assert job.result["rounds"] == job.rounds_done > 1
    assert job.result["stop_reason"] in ("decided", "futile", "budget")
    with session_scope(database) as s:
        rounds = {r.round for r in s.scalars(select(SampleRow).where(SampleRow.job_id == job.id))}
    assert rounds == set(range(job.rounds_done))
