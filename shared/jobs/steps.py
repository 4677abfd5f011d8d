"""A defense job's steps as the workers run them: a round (claim, ONE batched generate, record),
the vote, the sweep.

Each step locks the job row and skips what is done already (a redelivered message is harmless),
changes the job's status only through ``shared.jobs.store``, and returns the messages that follow
(``shared.pipeline``) for the task to send after the commit. A step that raises ends the job
``failed`` with the reason: the input or the model is at fault, so it is not retried — except
for faults of the database, broker or object store (``shared.faults``), which go up to the task
wrapper and are retried with backoff.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from PIL import Image
from sqlalchemy.orm import Session

from shared import pipeline
from shared.backends.registry import load_embedder, load_generator
from shared.benchmarks.judges import KEYWORD_REFUSALS, GuardRefusals, LLMJudge
from shared.config import Settings
from shared.db import locked_unfinished, session_scope
from shared.faults import is_transient, raise_if_transient
from shared.jobs.store import (
    config_of,
    fail,
    finish,
    keep_sampling,
    lock_jobs,
    lost_jobs,
    mark_cancelled,
    needs_round,
    needs_vote,
    now,
    record_round,
    samples_of,
    save_votes,
    start,
    waiting_rounds,
    waiting_votes,
)
from shared.liveness import held_elsewhere, live_workers, worker_id
from shared.media.decode import Waveform, fit_side, load_audio, load_image
from shared.models import Job, Media
from shared.observability import events
from shared.pipeline import Message
from shared.smoothing.noise import plan_round
from shared.smoothing.refusal import RefusalClassifier
from shared.smoothing.smoother import EmbeddingCache, aggregate, next_step
from shared.smoothing.types import CandidateSpec, Generation, Generator, RoundRequest, Sample, SmoothConfig, Timings
from shared.storage import ObjectStore
from shared.webhooks.schedule import schedule_webhook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundInput:
    """What a round reads, copied from the rows under the lock (the generate runs without it)."""

    job_id: uuid.UUID
    object_key: str
    modality: str
    prompt: str
    model: str
    config: SmoothConfig
    specs: list[CandidateSpec]  # the round's candidates (seeded: a redelivery makes the same ones)
    audit: bool = False  # an audit's defense job (its rounds go on the gpu-audits lane)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # a released round's clock: stale at the sweeper's next pass
Outcome = list[Generation] | Exception  # a round's generations, or why its job fails


def sample_round(settings: Settings, job_id: str, round_index: int) -> list[Message]:
    """Round ``round_index`` of a job, generated together with the rounds other jobs of the same
    model wait for (``company``, up to ``max_batch_size`` candidates in all) in ONE batched
    generate; every round's samples are recorded and its vote follows. A cancel that came while
    the round waited ends the job instead. Each job keeps its own seeds, so a round's texts are
    the same whichever company it had."""
    if settings.batch_flush_ms > 0:
        time.sleep(settings.batch_flush_ms / 1e3)  # let rounds being sent join this one
    with locked_unfinished(settings.database_url, Job, job_id) as (session, job):
        if job is None or not needs_round(job, round_index) or held_elsewhere(session, settings, job.claimed_by):
            return []  # done already, or a duplicate of a round a live worker is generating
        if job.cancel_requested:
            mark_cancelled(job)
            schedule_webhook(session, settings, job)
            return pipeline.after_job_finished(job)
        start(job, worker_id())
        own = round_input(session, job, round_index)
    try:
        content = load_content(settings, own)  # a fault of the object store: retried (this job's claim stays ours)
    except Exception as exc:
        return end_failed(settings, job_id, exc)
    rounds, resend = [own], []
    contents: list[Image.Image | Waveform | Exception] = [content]
    try:
        company = claim_company(settings, own)
        for r in company:
            loaded = load_company_content(settings, r)
            if loaded is None:
                resend.append(r)  # the object store failed for it: its round goes back to the queue
            else:
                rounds.append(r)
                contents.append(loaded)
        if resend:
            release(settings, resend)
        outcomes, origin = generate_rounds(settings, rounds, contents)
        return record_outcomes(settings, rounds, outcomes, origin) + [
            pipeline.round_again(r.job_id, r.specs[0].round, audit=r.audit) for r in resend
        ]
    except BaseException:
        release(settings, rounds[1:] + resend)  # nothing recorded: the company's rounds go back
        raise


def round_input(session: Session, job: Job, round_index: int) -> RoundInput:
    media = session.get(Media, job.media_id)
    assert media is not None
    config = config_of(job)
    return RoundInput(
        job.id,
        media.object_key,
        media.modality,
        job.prompt,
        job.model,
        config,
        plan_round(config, round_index),
        job.audit_item_id is not None,
    )


def claim_company(settings: Settings, own: RoundInput) -> list[RoundInput]:
    """Other jobs' rounds that can share ``own``'s generate, claimed by this worker: same model
    and length, while the candidates fit ``max_batch_size``; interactive jobs first, then the
    longest waiting. None when ``batch_across_jobs`` is off."""
    room = settings.max_batch_size - len(own.specs)
    if not settings.batch_across_jobs or room <= 0:
        return []
    taken: list[RoundInput] = []
    with session_scope(settings.database_url) as session:
        live = live_workers(session, settings)
        for job in waiting_rounds(session, own.job_id, own.model, own.config.max_new_tokens, live, limit=room):
            candidate = round_input(session, job, job.rounds_done)
            if not candidate.specs or len(candidate.specs) > room:
                continue
            start(job, worker_id())
            taken.append(candidate)
            room -= len(candidate.specs)
    return taken


def load_content(settings: Settings, source: RoundInput) -> Image.Image | Waveform:
    return decoded(settings, source, ObjectStore.from_settings(settings).get(source.object_key))


def load_company_content(settings: Settings, source: RoundInput) -> Image.Image | Waveform | Exception | None:
    """The input, the error that fails its job (bad input), or None when the object store failed
    (the job is not at fault: its round is re-sent)."""
    try:
        return load_content(settings, source)
    except Exception as exc:
        return None if is_transient(exc) else exc


def generate_rounds(
    settings: Settings, rounds: list[RoundInput], contents: list[Image.Image | Waveform | Exception]
) -> tuple[list[Outcome], dict[str, Any] | None]:
    """ONE batched generate over every loadable round (chunked only by ``max_batch_size``), and
    where it ran (the generator's ``generated_on``; None when nothing was generated). If it
    raises, each round is generated alone, so a bad input fails its own job only."""
    outcomes: list[Outcome] = [c if isinstance(c, Exception) else [] for c in contents]
    ready = [i for i, c in enumerate(contents) if not isinstance(c, Exception)]
    if not ready:
        return outcomes, None
    max_new_tokens = rounds[0].config.max_new_tokens
    requests = [RoundRequest(contents[i], rounds[i].prompt, rounds[i].specs) for i in ready]
    try:
        generator = load_generator(rounds[0].model, settings=settings)
    except Exception as exc:  # the model is at fault: every job of it fails
        raise_if_transient(exc)
        return [exc if i in ready else o for i, o in enumerate(outcomes)], None
    log.info("one generate: %d jobs' rounds, %d candidates", len(requests), sum(len(r.candidates) for r in requests))
    for i, outcome in zip(ready, generated(generator, requests, max_new_tokens), strict=True):
        outcomes[i] = outcome
    return outcomes, generator.generated_on


def generated(generator: Generator, requests: list[RoundRequest], max_new_tokens: int) -> list[Outcome]:
    """Every request's generations from ONE call; if it raises, each request alone, so an error is
    its own request's (a fault of the infrastructure is raised: the task retries)."""
    try:
        return list(generator.generate_many(requests, max_new_tokens=max_new_tokens))
    except Exception as exc:
        raise_if_transient(exc)
        if len(requests) == 1:
            return [exc]
        return [generated(generator, [r], max_new_tokens)[0] for r in requests]


def record_outcomes(
    settings: Settings, rounds: list[RoundInput], outcomes: list[Outcome], origin: dict[str, Any] | None
) -> list[Message]:
    """Every round's samples and where they were generated (``origin``), or its job's failure, in
    ONE transaction — all or nothing — and the messages that follow: each job's vote, or a failed
    job's finish."""
    messages: list[Message] = []
    with session_scope(settings.database_url) as session:
        jobs = lock_jobs(session, [r.job_id for r in rounds])
        for r, outcome in zip(rounds, outcomes, strict=True):
            job = jobs.get(r.job_id)
            if job is None or job.finished_at is not None:
                continue
            if isinstance(outcome, Exception):
                messages += failed(session, settings, job.id, outcome)
            else:
                record_round(session, job, r.specs, outcome)
                add_origin(job, origin)
                events.round_done(job, r.model, outcome)
                messages += pipeline.after_round(job)
    return messages


def add_origin(job: Job, origin: dict[str, Any] | None) -> None:
    """``job.generated_on``: every distinct place its rounds were generated, in order of first use."""
    seen = job.generated_on or []
    if origin is not None and origin not in seen:
        job.generated_on = [*seen, origin]


def release(settings: Settings, rounds: list[RoundInput]) -> None:
    """Drop this worker's claims on rounds it will not generate; the sweeper re-sends them at its
    next pass (best effort: a claim left behind is taken again by this worker's next round, or
    dropped by the sweeper after ``stale_after_s``)."""
    if not rounds:
        return
    try:
        with session_scope(settings.database_url) as session:
            for job in lock_jobs(session, [r.job_id for r in rounds]).values():
                if job.claimed_by == worker_id():
                    job.claimed_by, job.touched_at = None, EPOCH
    except Exception:
        log.warning("could not release %d claimed rounds", len(rounds), exc_info=True)


def decoded(settings: Settings, source: RoundInput, data: bytes) -> Image.Image | Waveform:
    """The round's input: the audio, or the image — area-downscaled to ``max_noise_side`` for pixel
    noise (noise drawn on a 4096² image would cost the worker gigabytes per round)."""
    if source.modality != "image":
        return load_audio(data)
    image = load_image(data)
    return fit_side(image, settings.max_noise_side) if source.config.noise_space == "pixel" else image


def vote(settings: Settings, job_id: str) -> list[Message]:
    """Embed, cluster and bound every sample so far — for this job and the other jobs whose votes
    wait (``batch_across_jobs``), their texts embedded in ONE pass; per job, the next round if
    undecided with budget left (and not cancelled), else the job's result. One job's failure ends
    that job alone."""
    try:
        with locked_unfinished(settings.database_url, Job, job_id) as (session, job):
            if job is None or not needs_vote(job):
                return []
            jobs = [job, *(waiting_votes(session, job, settings.vote_batch_jobs) if settings.batch_across_jobs else [])]
            return count_all_votes(session, settings, jobs)
    except Exception as exc:
        return end_failed(settings, job_id, exc)


def count_all_votes(session: Session, settings: Settings, jobs: list[Job]) -> list[Message]:
    samples = {job.id: samples_of(session, job.id) for job in jobs}
    embedder = EmbeddingCache(load_embedder(settings=settings))
    embedder([s.text for job in jobs for s in samples[job.id]])  # every distinct text in one pass
    messages: list[Message] = []
    for job in jobs:
        try:
            with session.begin_nested():  # a job that fails rolls back alone
                count_votes(session, job, samples[job.id], embedder, refusal_labeller(settings, job))
        except Exception as exc:
            raise_if_transient(exc)
            messages += failed(session, settings, job.id, exc)
            continue
        schedule_webhook(session, settings, job)  # when the vote finished it
        messages += pipeline.after_vote(job)
    return messages


def refusal_labeller(settings: Settings, job: Job) -> RefusalClassifier:
    """What labels a job's candidates refuse/comply: the refusal judge's keywords, or — where the
    deployment names a LlamaGuard-type ``refusal_guard`` and the job votes refusal-aware — the
    keywords vetoed by the guard (a "refusal" that still leaks counts as compliance)."""
    if settings.refusal_guard and config_of(job).refusal_aware:
        return GuardRefusals(load_guard(settings.refusal_guard, settings.device), job.prompt)
    return KEYWORD_REFUSALS


@cache
def load_guard(path: str, device: str) -> LLMJudge:
    """The guard model, loaded once per worker process."""
    return LLMJudge(path, device=device)


def count_votes(
    session: Session, job: Job, samples: list[Sample], embedder: EmbeddingCache, refusals: RefusalClassifier
) -> None:
    config = config_of(job)
    spent = Timings(generation_ms=sum(s.generation_ms for s in samples))  # the batched calls' time
    result = aggregate(
        samples,
        embedder,
        config,
        rounds=job.rounds_done,
        stop="fixed",
        generator=job.model,
        timings=spent,
        refusals=refusals,
    )
    save_votes(session, job.id, samples)
    reason = next_step(result, config)
    if reason is None and not job.cancel_requested:
        keep_sampling(job)
    else:
        result.stop_reason = reason or "budget"
        finish(session, job, result)
        events.job_finished(job)


def sweep_jobs(settings: Settings) -> list[Message]:
    """The next step of every dispatched job whose worker died mid-round, or that nobody touched
    for ``stale_after_s`` (its message was lost). Jobs waiting for a slot are the dispatcher's."""
    older_than = now() - timedelta(seconds=settings.stale_after_s)
    with session_scope(settings.database_url) as session:
        lost = lost_jobs(session, older_than, live_workers(session, settings))
        return [m for job in lost for m in pipeline.resume_job(job)]


def end_failed(settings: Settings, job_id: str | uuid.UUID, exc: Exception) -> list[Message]:
    """A step raised: the job ends ``failed`` with the reason (the traceback goes to the log) and
    notifies like any finished job."""
    raise_if_transient(exc)  # the database, broker or object store: the task wrapper retries
    with session_scope(settings.database_url) as session:
        return failed(session, settings, job_id, exc)


def failed(session: Session, settings: Settings, job_id: str | uuid.UUID, exc: Exception) -> list[Message]:
    """In ``session``: the job ends ``failed`` with the reason (the traceback goes to the log) and
    notifies like any finished job."""
    log.error("job %s failed", job_id, exc_info=exc)
    job = fail(session, str(job_id), f"{type(exc).__name__}: {exc}")
    events.job_finished(job)
    schedule_webhook(session, settings, job)
    return pipeline.after_job_finished(job) if job is not None else []
