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
import uuid
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from PIL import Image
from sqlalchemy.orm import Session

from shared import pipeline
from shared.backends.registry import load_embedder, load_generator
from shared.benchmarks.judges import KEYWORD_REFUSALS, GuardRefusals, LLMJudge
from shared.config import Settings
from shared.db import locked_unfinished, session_scope
from shared.faults import raise_if_transient
from shared.jobs.store import (
    config_of,
    fail,
    finish,
    keep_sampling,
    lost_jobs,
    mark_cancelled,
    needs_round,
    needs_vote,
    now,
    record_round,
    samples_of,
    save_votes,
    start,
)
from shared.liveness import held_elsewhere, live_workers, worker_id
from shared.media.decode import Waveform, fit_side, load_audio, load_image
from shared.models import Job, Media
from shared.pipeline import Message
from shared.smoothing.noise import plan_round
from shared.smoothing.refusal import RefusalClassifier
from shared.smoothing.smoother import EmbeddingCache, aggregate, next_step
from shared.smoothing.types import CandidateSpec, Embedder, Generation, SmoothConfig, Timings
from shared.storage import ObjectStore
from shared.webhooks.schedule import schedule_webhook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundInput:
    """What a round reads, copied from the rows under the lock (the generate runs without it)."""

    object_key: str
    modality: str
    prompt: str
    model: str
    config: SmoothConfig


def sample_round(settings: Settings, job_id: str, round_index: int) -> list[Message]:
    """Round ``round_index``: claim it, ONE batched generate over its candidates, upsert the samples;
    the vote follows. A cancel that came while the round waited ends the job instead."""
    with locked_unfinished(settings.database_url, Job, job_id) as (session, job):
        if job is None or not needs_round(job, round_index) or held_elsewhere(session, settings, job.claimed_by):
            return []  # done already, or a duplicate of a round a live worker is generating
        if job.cancel_requested:
            mark_cancelled(job)
            schedule_webhook(session, settings, job)
            return pipeline.after_job_finished(job)
        start(job, worker_id())
        source = round_input(session, job)
    try:
        specs, generations = generate(settings, source, round_index)
    except Exception as exc:
        return end_failed(settings, job_id, exc)
    with locked_unfinished(settings.database_url, Job, job_id) as (session, job):
        if job is None:
            return []
        record_round(session, job, specs, generations)
        return pipeline.after_round(job)


def round_input(session: Session, job: Job) -> RoundInput:
    media = session.get(Media, job.media_id)
    assert media is not None
    return RoundInput(media.object_key, media.modality, job.prompt, job.model, config_of(job))


def generate(settings: Settings, source: RoundInput, round_index: int) -> tuple[list[CandidateSpec], list[Generation]]:
    """The round's candidates (seeded, so a redelivery makes the same ones) and their generations."""
    data = ObjectStore.from_settings(settings).get(source.object_key)
    content = decoded(settings, source, data)
    specs = plan_round(source.config, round_index)
    generator = load_generator(source.model, settings=settings)
    return specs, generator.generate(content, source.prompt, specs, max_new_tokens=source.config.max_new_tokens)


def decoded(settings: Settings, source: RoundInput, data: bytes) -> Image.Image | Waveform:
    """The round's input: the audio, or the image — area-downscaled to ``max_noise_side`` for pixel
    noise (noise drawn on a 4096² image would cost the worker gigabytes per round)."""
    if source.modality != "image":
        return load_audio(data)
    image = load_image(data)
    return fit_side(image, settings.max_noise_side) if source.config.noise_space == "pixel" else image


def vote(settings: Settings, job_id: str) -> list[Message]:
    """Embed, cluster and bound every sample so far; the next round if undecided with budget
    left (and not cancelled), else the job's result."""
    try:
        with locked_unfinished(settings.database_url, Job, job_id) as (session, job):
            if job is None or not needs_vote(job):
                return []
            count_votes(session, job, load_embedder(settings=settings), refusal_labeller(settings, job))
            schedule_webhook(session, settings, job)  # when the vote finished it
            return pipeline.after_vote(job)
    except Exception as exc:
        return end_failed(settings, job_id, exc)


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


def count_votes(session: Session, job: Job, embedder_model: Embedder, refusals: RefusalClassifier) -> None:
    config = config_of(job)
    samples = samples_of(session, job.id)
    spent = Timings(generation_ms=sum(s.generation_ms for s in samples))  # the batched calls' time
    embedder = EmbeddingCache(embedder_model)
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
    log.error("job %s failed", job_id, exc_info=exc)
    with session_scope(settings.database_url) as session:
        job = fail(session, str(job_id), f"{type(exc).__name__}: {exc}")
        schedule_webhook(session, settings, job)
        return pipeline.after_job_finished(job) if job is not None else []
