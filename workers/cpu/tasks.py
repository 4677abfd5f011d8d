"""CPU worker: embed, cluster and bound a job's samples; another round or the result. Also the
sweeper, which re-sends the next step of jobs whose message was lost."""

from __future__ import annotations

from datetime import timedelta

from shared.audits.store import stale_audits
from shared.backends.registry import load_embedder
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs.store import config_of, finish, lock, needs_vote, now, samples_of, save_votes, stale_jobs
from shared.smoothing.smoother import EmbeddingCache, next_step
from shared.smoothing.smoother import aggregate as vote
from shared.smoothing.types import Timings
from workers.celery_app import TaskQueue, send, task
from workers.outcomes import failed, notify


@task(TaskQueue.CPU, "cpu.aggregate")
def aggregate(job_id: str) -> None:
    settings = get_settings()
    with failed(job_id), session_scope(settings.database_url) as session:
        job = lock(session, job_id)
        if job is None or not needs_vote(job):
            return
        config = config_of(job)
        samples = samples_of(session, job.id)
        spent = Timings(generation_ms=sum(s.generation_ms for s in samples))  # the batched calls' time
        result = vote(
            samples,
            EmbeddingCache(load_embedder()),
            config,
            rounds=job.rounds_done,
            stop="fixed",
            generator=job.model,
            timings=spent,
        )
        save_votes(session, job.id, samples)
        reason = next_step(result, config)
        if reason is None and not job.cancel_requested:
            job.aggregated_rounds, job.touched_at, next_round = job.rounds_done, now(), job.rounds_done
        else:
            result.stop_reason = reason or "budget"
            finish(session, job, result)
            next_round = None
    if next_round is None:
        notify(job)
    else:
        send("gpu.sample_round", [job_id, next_round])


@task(TaskQueue.CPU, "cpu.sweep")
def sweep() -> int:
    """Re-send the next step of every job and audit untouched for ``stale_after_s``; returns how many."""
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        bound = now() - timedelta(seconds=settings.stale_after_s)
        lost = stale_jobs(session, bound) + stale_audits(session, bound)
    for _, name, args in lost:
        send(name, args)
    return len(lost)
