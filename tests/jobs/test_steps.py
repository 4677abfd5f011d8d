"""A job's steps against a real PostgreSQL, in process (no worker, no broker: a step returns the
messages it would send)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import DEMO_IMAGE, Settings
from shared.db import locked_unfinished, session_scope
from shared.jobs.steps import sample_round, sweep_jobs, vote
from shared.jobs.store import create_job, now
from shared.liveness import heartbeat, worker_id
from shared.media.store import save_media
from shared.models import Job, Worker
from shared.pipeline import Message, Step
from shared.smoothing import SmoothConfig
from shared.tenants import create_tenant


@pytest.fixture()
def settings_of(database):
    return Settings(database_url=database, stale_after_s=300)


def new_job(database, store, **fields):
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        media = save_media(
            s, store, tenant_id=tenant.id, data=DEMO_IMAGE.read_bytes(), content_type="image/png", modality="image"
        )
        job = create_job(s, media=media, prompt="What colour is the circle?", model="m", config=SmoothConfig())
        for k, v in fields.items():
            setattr(job, k, v)
        return str(job.id)


def read(database, job_id):
    with session_scope(database) as s:
        return s.get(Job, uuid.UUID(job_id))


def test_stale_jobs_get_their_next_step(database, store, settings_of):
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    queued = new_job(database, store, touched_at=long_ago, dispatched_at=long_ago)
    voted = new_job(database, store, touched_at=long_ago, dispatched_at=long_ago, rounds_done=2, aggregated_rounds=1)
    fresh = new_job(database, store, dispatched_at=now())
    waiting = new_job(database, store, touched_at=long_ago)  # never dispatched: the dispatcher's, not lost
    due = sweep_jobs(settings_of)
    assert sorted(due, key=str) == sorted(
        [Message(Step.SAMPLE_ROUND, (queued, 0)), Message(Step.AGGREGATE, (voted,))], key=str
    )
    assert all(fresh not in m.args and waiting not in m.args for m in due)
    assert sweep_jobs(settings_of) == []  # their clocks were reset: not re-sent again within the bound


def test_a_round_claimed_by_a_dead_worker_is_resent_at_once_and_a_live_claim_is_left_alone(
    database, store, settings_of
):
    heartbeat(settings_of, "gpu")  # this process is a live worker
    dead = new_job(database, store, dispatched_at=now(), status="running", claimed_by="gone:1:dead")
    mine = new_job(database, store, dispatched_at=now(), status="running", claimed_by=worker_id())
    assert sweep_jobs(settings_of) == [Message(Step.SAMPLE_ROUND, (dead, 0))]  # no stale_after_s wait
    assert read(database, dead).claimed_by is None and read(database, mine).claimed_by == worker_id()
    with session_scope(database) as s:  # a duplicate of a round another live worker holds is dropped
        s.get(Job, uuid.UUID(mine)).claimed_by = "other:2:live"
        s.add(Worker(id="other:2:live", queues="gpu", seen_at=now()))
    assert sample_round(settings_of, mine, 0) == [] and read(database, mine).rounds_done == 0


def test_a_round_waiting_when_the_job_was_cancelled_ends_it_and_notifies(database, store, settings_of):
    job_id = new_job(database, store, status="running", rounds_done=1, aggregated_rounds=1, cancel_requested=True)
    with session_scope(database) as s:
        s.get(Job, uuid.UUID(job_id)).callback_url = "http://127.0.0.1:9/hook"
    assert sample_round(settings_of, job_id, 1) == [Message(Step.DELIVER, (job_id, 1))]
    job = read(database, job_id)
    assert job.status == "cancelled" and job.finished_at is not None and job.rounds_done == 1


def test_redelivered_steps_of_a_finished_job_do_nothing(database, store, settings_of):
    job_id = new_job(database, store, status="succeeded", finished_at=now(), rounds_done=1, aggregated_rounds=1)
    assert sample_round(settings_of, job_id, 0) == [] and vote(settings_of, job_id) == []
    assert sample_round(settings_of, str(uuid.uuid4()), 0) == []  # a job that is gone
    assert read(database, job_id).status == "succeeded"


def test_the_lock_yields_no_row_for_a_finished_or_missing_one(database, store):
    running, finished = new_job(database, store), new_job(database, store, finished_at=now())
    with locked_unfinished(database, Job, running) as (_, job):
        assert job is not None and str(job.id) == running
    for row_id in (finished, uuid.uuid4()):
        with locked_unfinished(database, Job, row_id) as (_, job):
            assert job is None


def test_pixel_noise_is_drawn_on_the_image_downscaled_to_max_noise_side(settings_of):
    import io

    from PIL import Image

    from shared.jobs.steps import RoundInput, decoded

    buf = io.BytesIO()
    Image.open(DEMO_IMAGE).convert("RGB").resize((3000, 1500)).save(buf, format="PNG")
    s = settings_of.model_copy(update={"max_noise_side": 600})
    pixel = RoundInput(uuid.uuid4(), "k", "image", "p", "m", SmoothConfig(noise_space="pixel"), [])
    normalized = RoundInput(uuid.uuid4(), "k", "image", "p", "m", SmoothConfig(noise_space="normalized"), [])
    assert decoded(s, pixel, buf.getvalue()).size == (600, 300)
    assert decoded(s, normalized, buf.getvalue()).size == (3000, 1500)  # the processor's own resize
