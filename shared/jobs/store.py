"""Defense jobs in the database: create, record a round's samples (idempotently), vote,
finish. The algorithm itself is ``shared.smoothing``."""

from __future__ import annotations

import uuid
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.errors import Conflict
from shared.jobs.options import from_params, to_params
from shared.liveness import claimed_by_the_dead, worker_id
from shared.models import Job, Media, SampleRow
from shared.smoothing.types import CandidateSpec, Generation, Sample, SmoothConfig, SmoothResult

SAMPLE_FIELDS = [f.name for f in fields(Sample)]
RESULT = TypeAdapter(SmoothResult)  # ``Job.result``: the core's result without its samples (those are rows)


def now() -> datetime:
    return datetime.now(UTC)


def config_of(job: Job) -> SmoothConfig:
    return from_params(job.params)


def create_job(
    session: Session,
    *,
    media: Media,
    prompt: str,
    model: str,
    config: SmoothConfig,
    request_hash: str = "",
    idempotency_key: str | None = None,
    callback_url: str | None = None,
) -> Job:
    job = Job(
        tenant_id=media.tenant_id,
        media_id=media.id,
        status="queued",
        model=model,
        prompt=prompt,
        params=to_params(config),
        request_hash=request_hash,
        idempotency_key=idempotency_key,
        callback_url=callback_url,
        rounds_done=0,
        aggregated_rounds=0,
        cancel_requested=False,
        touched_at=now(),
    )
    session.add(job)
    session.flush()
    return job


def lock(session: Session, job_id: str | uuid.UUID) -> Job | None:
    """The job row, locked for this transaction: steps of one job never interleave."""
    return session.get(Job, uuid.UUID(str(job_id)), with_for_update=True)


def needs_round(job: Job | None, round_index: int) -> bool:
    """False for a finished job or a round already generated (a redelivered message)."""
    return job is not None and job.finished_at is None and round_index >= job.rounds_done


def needs_vote(job: Job | None) -> bool:
    """False for a finished job or when the latest round was already voted on (a duplicate)."""
    return job is not None and job.finished_at is None and job.aggregated_rounds < job.rounds_done


def start(job: Job, worker: str) -> None:
    """``worker`` claims the job's round (the sweeper re-sends it if that worker dies)."""
    job.claimed_by = worker
    job.status = "running"
    job.started_at = job.started_at or now()
    job.touched_at = now()


def record_round(session: Session, job: Job, specs: list[CandidateSpec], gens: list[Generation]) -> None:
    """Upsert one row per candidate: a redelivered round rewrites the same rows, adds none."""
    rows = [
        asdict(Sample.from_generation(s, g)) | {"id": uuid.uuid4(), "job_id": job.id}
        for s, g in zip(specs, gens, strict=True)
    ]
    stmt = insert(SampleRow).values(rows)
    keep = {c: stmt.excluded[c] for c in ("text", "num_tokens", "generation_ms")}
    session.execute(stmt.on_conflict_do_update(index_elements=["job_id", "round", "index"], set_=keep))
    job.rounds_done = max(job.rounds_done, specs[0].round + 1) if specs else job.rounds_done
    job.status, job.claimed_by = "running", None
    job.generated_at = job.touched_at = now()


def samples_of(session: Session, job_id: uuid.UUID) -> list[Sample]:
    rows = session.scalars(select(SampleRow).where(SampleRow.job_id == job_id).order_by(SampleRow.index))
    return [Sample(**{name: getattr(r, name) for name in SAMPLE_FIELDS}) for r in rows]


def save_votes(session: Session, job_id: uuid.UUID, samples: list[Sample]) -> None:
    rows = {r.index: r for r in session.scalars(select(SampleRow).where(SampleRow.job_id == job_id))}
    for s in samples:
        row = rows[s.index]
        row.cluster, row.cosine_to_centroid = s.cluster, s.cosine_to_centroid
        row.selected, row.answer_label = s.selected, s.answer_label


def result_of(job: Job) -> SmoothResult | None:
    """A finished job's result as the core's type (``samples`` empty: read them with ``samples_of``)."""
    return None if job.result is None else RESULT.validate_python(job.result | {"samples": []})


def finish(session: Session, job: Job, result: SmoothResult) -> None:
    summary: dict[str, Any] = RESULT.dump_python(result, mode="json")
    summary.pop("samples")
    job.result = summary
    job.aggregated_rounds = job.rounds_done
    if job.cancel_requested:
        job.status = "cancelled"
    else:
        job.status = "abstained" if result.abstained else "succeeded"
    job.aggregated_at = job.finished_at = now()


def keep_sampling(job: Job) -> None:
    """The vote on every round so far is undecided and budget is left: the next round follows."""
    job.aggregated_rounds = job.rounds_done
    job.touched_at = now()


def cancel(job: Job) -> None:
    """Stop a job: remaining rounds are not run. A job no worker has touched ends at once;
    a running one ends at its next step (the GPU task checks before generating, the CPU task
    after voting). Finished jobs can't be cancelled."""
    if job.finished_at is not None:
        raise Conflict(f"job {job.id} already finished ({job.status})")
    job.cancel_requested = True
    if job.rounds_done == 0 and job.status == "queued":
        mark_cancelled(job)


def mark_cancelled(job: Job) -> None:
    job.status = "cancelled"
    job.finished_at = now()


def fail(session: Session, job_id: str, error: str) -> Job | None:
    """A step raised: the job ends ``failed`` with the reason (not retried: the input or model is at fault)."""
    job = lock(session, job_id)
    if job is None or job.finished_at is not None:
        return None
    job.status, job.error, job.finished_at = "failed", error[:4000], now()
    return job


def lock_jobs(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, Job]:
    """Several job rows locked for this transaction, in id order (two batches never deadlock)."""
    query = select(Job).where(Job.id.in_(job_ids)).order_by(Job.id).with_for_update()
    return {job.id: job for job in session.scalars(query)}


def waiting_rounds(
    session: Session, job_id: uuid.UUID, model: str, max_new_tokens: int, live: set[str], *, limit: int
) -> list[Job]:
    """Other dispatched jobs (than ``job_id``) whose next round waits (the vote on their last one
    is done) for ``model`` and ``max_new_tokens``, not claimed by a live worker other than this one,
    locked (rows another transaction holds are skipped): interactive jobs first, then the longest
    waiting."""
    unclaimed = or_(Job.claimed_by.is_(None), Job.claimed_by == worker_id(), claimed_by_the_dead(Job.claimed_by, live))
    query = (
        select(Job)
        .where(
            Job.id != job_id,
            Job.model == model,
            Job.params["max_new_tokens"].as_integer() == max_new_tokens,
            Job.finished_at.is_(None),
            Job.dispatched_at.is_not(None),
            Job.cancel_requested.is_(False),
            Job.aggregated_rounds == Job.rounds_done,
            unclaimed,
        )
        .order_by(Job.audit_item_id.is_not(None), Job.touched_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def waiting_votes(session: Session, job: Job, limit: int) -> list[Job]:
    """Up to ``limit`` other unfinished jobs with a round not voted on yet, locked (skipping rows
    another transaction holds), in id order."""
    query = (
        select(Job)
        .where(Job.id != job.id, Job.finished_at.is_(None), Job.aggregated_rounds < Job.rounds_done)
        .order_by(Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def lost_jobs(session: Session, older_than: datetime, live: set[str]) -> list[Job]:
    """Dispatched, unfinished jobs whose round a dead worker had claimed, or that nobody touched
    since ``older_than`` (their message was lost, or a claim was left behind), locked. Claims are
    dropped and clocks reset, so each is re-sent once per bound; a duplicate is harmless (every
    step checks what is done)."""
    lost = or_(claimed_by_the_dead(Job.claimed_by, live), Job.touched_at < older_than)
    query = select(Job).where(Job.finished_at.is_(None), Job.dispatched_at.is_not(None), lost)
    jobs = session.scalars(query.with_for_update(skip_locked=True)).all()
    for job in jobs:
        job.claimed_by, job.touched_at = None, now()
    return list(jobs)
