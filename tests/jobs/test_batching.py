"""Rounds and votes of several jobs batched together, in process against a real PostgreSQL and S3
server with the bundled demo model: the same texts and answers as each job alone, ONE generate
for the company, one embedding pass for the votes, and one bad input failing its own job only."""

import socket
import uuid
from importlib import metadata

import pytest
from sqlalchemy import select

from shared.backends import hf_common
from shared.config import DEMO_IMAGE, DEMO_MODEL
from shared.db import session_scope
from shared.jobs.steps import add_origin, sample_round, vote
from shared.jobs.store import create_job, now
from shared.media.store import save_media
from shared.models import Job, SampleRow
from shared.pipeline import Message, Step
from shared.smoothing import SmoothConfig
from shared.tenants import create_tenant

# different prompts (so different lengths: left padding), σ = 0 and σ > 0 in both noise spaces, seeds, adaptive
JOBS = [
    ("What colour is the circle?", SmoothConfig(sigma=0.0, max_new_tokens=8)),
    ("Is there a red square in the image? Answer yes or no.", SmoothConfig(sigma=0.5, seed=3, max_new_tokens=8)),
    ("What colour is the triangle?", SmoothConfig(sigma=0.08, noise_space="pixel", seed=7, max_new_tokens=8)),
    ("How many shapes are there?", SmoothConfig(adaptive=True, round_size=4, sigma=1.0, seed=9, max_new_tokens=8)),
]


@pytest.fixture()
def settings_of(stack, database, store):
    return stack.settings(
        SMOOTHGUARD_DATABASE_URL=database,
        SMOOTHGUARD_S3_BUCKET=store.bucket,
        SMOOTHGUARD_DEVICE="cpu",
        SMOOTHGUARD_MODEL=str(DEMO_MODEL),
        SMOOTHGUARD_MAX_BATCH_SIZE="64",
    )


@pytest.fixture()
def generate_calls(monkeypatch):
    """How many batched ``generate`` calls ran (the real ones, counted)."""
    calls = []
    real = hf_common.generate_batch

    def counted(model, processor, batch, *args, **kwargs):
        calls.append(batch["input_ids"].shape[0])
        return real(model, processor, batch, *args, **kwargs)

    monkeypatch.setattr(hf_common, "generate_batch", counted)
    return calls


def submit_all(database, store, jobs=JOBS) -> list[str]:
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        media = save_media(
            s, store, tenant_id=tenant.id, data=DEMO_IMAGE.read_bytes(), content_type="image/png", modality="image"
        )
        ids = []
        for prompt, config in jobs:
            job = create_job(s, media=media, prompt=prompt, model=str(DEMO_MODEL), config=config)
            job.dispatched_at = now()
            ids.append(str(job.id))
        return ids


CPU_ORIGIN = {
    "device": "cpu",
    "dtype": "float32",
    "revision": None,  # a local checkpoint folder: no commit
    "torch": metadata.version("torch"),
    "transformers": metadata.version("transformers"),
    "host": socket.gethostname(),
}


def generated_on(database, ids):
    with session_scope(database) as s:
        return [s.get(Job, uuid.UUID(i)).generated_on for i in ids]


def texts_and_answers(database, ids):
    with session_scope(database) as s:
        out = []
        for job_id in ids:
            rows = s.scalars(select(SampleRow).where(SampleRow.job_id == uuid.UUID(job_id)).order_by(SampleRow.index))
            job = s.get(Job, uuid.UUID(job_id))
            out.append(([(r.index, r.seed, r.text, r.cluster) for r in rows], job.result and job.result["answer"]))
        return out


def run_to_the_end(settings, todo: list[Message]) -> None:
    """The jobs' rounds and votes, message after message as the queues would hand them out."""
    while todo:
        m = todo.pop(0)
        if m.step == Step.SAMPLE_ROUND:
            todo += sample_round(settings, *m.args)
        elif m.step == Step.AGGREGATE:
            todo += vote(settings, *m.args)


def test_rounds_of_several_jobs_share_one_generate_and_match_each_job_alone(
    database, store, settings_of, generate_calls
):
    alone_ids = submit_all(database, store)
    alone = settings_of.model_copy(update={"batch_across_jobs": False})
    run_to_the_end(alone, [Message(Step.SAMPLE_ROUND, (i, 0)) for i in alone_ids])
    alone_calls = len(generate_calls)
    assert alone_calls > len(JOBS)  # the adaptive job took more than one round

    generate_calls.clear()
    batched_ids = submit_all(database, store)
    first = sample_round(settings_of, batched_ids[0], 0)
    assert sorted(first, key=str) == sorted([Message(Step.AGGREGATE, (i,)) for i in batched_ids], key=str)
    assert generate_calls == [11 + 11 + 11 + 5]  # ONE generate for the four jobs' first rounds
    assert generated_on(database, batched_ids) == [[CPU_ORIGIN]] * len(JOBS)  # the company's jobs too
    assert all(sample_round(settings_of, i, 0) == [] for i in batched_ids[1:])  # their own messages: done
    after_vote = vote(settings_of, batched_ids[0])  # the four votes in one pass (one embedding call)
    with session_scope(database) as s:
        assert all(s.get(Job, uuid.UUID(i)).aggregated_rounds == 1 for i in batched_ids)
    assert all(vote(settings_of, i) == [] for i in batched_ids[1:])
    run_to_the_end(settings_of, after_vote)
    assert len(generate_calls) == alone_calls - len(JOBS) + 1
    with session_scope(database) as s:
        assert all(s.get(Job, uuid.UUID(i)).finished_at is not None for i in batched_ids)
    # each sample keeps its own seed: the same rows, texts, clusters and answers as each job alone
    assert texts_and_answers(database, batched_ids) == texts_and_answers(database, alone_ids)


def test_a_job_lists_each_distinct_place_its_rounds_were_generated_once():
    job, elsewhere = Job(), CPU_ORIGIN | {"device": "cuda:0 NVIDIA H100 80GB HBM3", "host": "gpu-1"}
    for origin in (CPU_ORIGIN, CPU_ORIGIN, None, elsewhere, CPU_ORIGIN):
        add_origin(job, origin)
    assert job.generated_on == [CPU_ORIGIN, elsewhere]


def test_a_bad_input_fails_its_own_job_and_a_cancelled_job_is_not_taken(database, store, settings_of):
    ids = submit_all(database, store, JOBS[:3])
    corrupted = corrupted_media(database, store)
    with session_scope(database) as s:
        s.get(Job, uuid.UUID(ids[1])).media_id = corrupted
        s.get(Job, uuid.UUID(ids[2])).cancel_requested = True
    messages = sample_round(settings_of, ids[0], 0)
    with session_scope(database) as s:
        good, bad, cancelled = (s.get(Job, uuid.UUID(i)) for i in ids)
        assert good.rounds_done == 1 and good.claimed_by is None
        assert bad.status == "failed" and "UnidentifiedImageError" in bad.error and bad.rounds_done == 0
        assert good.generated_on == [CPU_ORIGIN] and bad.generated_on is None and cancelled.generated_on is None
        assert cancelled.rounds_done == 0 and cancelled.claimed_by is None and cancelled.finished_at is None
    assert Message(Step.AGGREGATE, (ids[0],)) in messages and Message(Step.DISPATCH, (str(good.tenant_id),)) in messages


def corrupted_media(database, store) -> uuid.UUID:
    """A media row (another tenant's: its own object) whose stored bytes are then garbage."""
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        media = save_media(
            s, store, tenant_id=tenant.id, data=DEMO_IMAGE.read_bytes(), content_type="image/png", modality="image"
        )
        media_id, key = media.id, media.object_key
    store.put(key, b"not an image at all", "image/png")
    return media_id
