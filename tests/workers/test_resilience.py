"""Lost work comes back: a GPU worker killed with SIGKILL mid-round (within the liveness bound,
not the broker's visibility timeout), a job whose message was lost. Real PostgreSQL, Redis, S3 and
worker processes started by the launcher."""

import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from shared.benchmarks.demo_model import build_model
from shared.config import DEMO_IMAGE
from shared.db import session_scope
from shared.jobs.store import create_job
from shared.media.store import save_media
from shared.models import Job, SampleRow
from shared.pipeline import Message, Step
from shared.smoothing import SmoothConfig
from shared.tenants import create_tenant
from workers.celery_app import CelerySender, make_app

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    """A random LLaVA big enough that one round of 128 candidates × 250 tokens takes seconds on CPU."""
    path = tmp_path_factory.mktemp("slow-llava")
    model, processor = build_model(seed=0, vision_hidden=32, text_hidden=128, layers=2)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def new_job(database, store, model, config, **fields):
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        media = save_media(
            s, store, tenant_id=tenant.id, data=DEMO_IMAGE.read_bytes(), content_type="image/png", modality="image"
        )
        job = create_job(s, media=media, prompt="What colour is the circle?", model=model, config=config)
        for k, v in fields.items():
            setattr(job, k, v)
        return str(job.id)


def read(database, job_id):
    with session_scope(database) as s:
        job = s.get(Job, uuid.UUID(job_id))
        texts = s.scalars(select(SampleRow.text).where(SampleRow.job_id == job.id).order_by(SampleRow.index)).all()
        return job, list(texts)


def wait_until(predicate, timeout=120, what="condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


# a worker beats every second and is dead after 3 s of silence; the sweeper looks every second; the
# broker would hand the killed worker's message out again only after an hour
LIVENESS = {
    "SMOOTHGUARD_WORKER_HEARTBEAT_S": "1",
    "SMOOTHGUARD_WORKER_TIMEOUT_S": "3",
    "SMOOTHGUARD_SWEEP_INTERVAL_S": "1",
    "SMOOTHGUARD_BROKER_VISIBILITY_TIMEOUT_S": "3600",
}


def test_gpu_worker_killed_mid_round_the_job_completes_once_with_the_same_answer(
    database, store, spawn_worker, queue, slow_model
):
    config = SmoothConfig(num_samples=127, max_new_tokens=250, seed=7)
    first = spawn_worker(("gpu",), **LIVENESS)
    killed = new_job(database, store, slow_model, config, dispatched_at=datetime.now(UTC))
    queue.send([Message(Step.SAMPLE_ROUND, (killed, 0))])
    wait_until(lambda: read(database, killed)[0].started_at, what="the round to start")
    time.sleep(1.0)  # inside the ~3 s batched generate (or the model load before it)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    killed_at = time.monotonic()
    job, texts = read(database, killed)
    assert job.rounds_done == 0 and texts == [] and job.finished_at is None  # killed mid-round: nothing written
    assert job.claimed_by is not None  # the dead worker's claim

    spawn_worker(("gpu", "cpu", "--beat"), **LIVENESS)  # the sweeper finds the dead claim and re-sends
    retaken = lambda: read(database, killed)[0].claimed_by not in (None, job.claimed_by)  # noqa: E731
    wait_until(retaken, timeout=60, what="a live worker to take the round again")
    print(f"a new worker took the killed round {time.monotonic() - killed_at:.1f} s after the kill")
    job = wait_until(lambda: (j := read(database, killed)[0]).finished_at and j, timeout=300, what="the job")
    reference = new_job(database, store, slow_model, config)  # the same request, never interrupted
    queue.send([Message(Step.SAMPLE_ROUND, (reference, 0))])
    ref = wait_until(lambda: (j := read(database, reference)[0]).finished_at and j, timeout=300, what="the reference")

    (_, texts), (_, ref_texts) = read(database, killed), read(database, reference)
    assert job.status == ref.status and job.result["answer"] == ref.result["answer"]
    assert job.result["consensus"] == ref.result["consensus"]
    assert len(texts) == 128 and texts == ref_texts  # each candidate once, bit-for-bit the same generations
    assert job.rounds_done == job.aggregated_rounds == 1


def test_sweeper_finishes_a_job_whose_message_was_lost(database, store, spawn_worker, queue):
    from shared.config import DEMO_MODEL

    long_ago = datetime.now(UTC) - timedelta(seconds=30)
    lost = new_job(database, store, str(DEMO_MODEL), SmoothConfig(seed=3), touched_at=long_ago, dispatched_at=long_ago)
    spawn_worker(("gpu", "cpu"), SMOOTHGUARD_STALE_AFTER_S="10")
    queue.send([Message(Step.SWEEP)])
    job = wait_until(lambda: (j := read(database, lost)[0]).finished_at and j, timeout=120, what="the swept job")
    assert job.status == "succeeded" and job.result["answer"] == "red"
    with session_scope(database) as s:
        assert s.scalar(select(func.count(SampleRow.id)).where(SampleRow.job_id == job.id)) == 11


def test_the_sweeper_and_the_dispatcher_are_scheduled():
    from shared.config import Settings

    schedule = make_app(Settings()).conf.beat_schedule
    assert schedule["sweep"]["task"] == Step.SWEEP == "cpu.sweep"
    assert schedule["dispatch"]["task"] == Step.DISPATCH == "cpu.dispatch"


def test_each_queue_gets_only_its_own_tasks(settings):
    """A message for ``gpu`` lands in the gpu list only (a CPU worker must never load the MLLM)."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    client.flushall()
    app = make_app(settings)
    with app.connection() as conn:
        for queue in app.conf.task_queues:  # declared, as the workers of every queue do
            queue(conn.default_channel).declare()
    CelerySender(app).send([Message(Step.SAMPLE_ROUND, ("x", 0))])
    assert (client.llen("gpu"), client.llen("cpu"), client.llen("webhooks"), client.llen("audits")) == (1, 0, 0, 0)


def test_a_step_that_raises_ends_the_job_failed_with_the_reason(database, store, spawn_worker, queue):
    broken = new_job(database, store, "/nonexistent/model", SmoothConfig())
    spawn_worker(("gpu", "cpu"))
    queue.send([Message(Step.SAMPLE_ROUND, (broken, 0))])
    job = wait_until(lambda: (j := read(database, broken)[0]).finished_at and j, timeout=120, what="the failure")
    assert job.status == "failed" and "nonexistent" in job.error and job.rounds_done == 0
