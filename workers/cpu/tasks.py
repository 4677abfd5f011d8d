"""CPU worker: embed, cluster and bound a job's samples; another round or the result."""

from __future__ import annotations

import uuid

from shared.backends.registry import load_embedder
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs import config_of, finish, samples_of, save_votes
from shared.models import Job
from shared.smoothing.smoother import EmbeddingCache, next_step
from shared.smoothing.smoother import aggregate as vote
from workers.celery_app import TaskQueue, task


@task(TaskQueue.CPU, "cpu.aggregate")
def aggregate(job_id: str) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        job = session.get(Job, uuid.UUID(job_id))
        if job is None or job.finished_at is not None:
            return
        config = config_of(job)
        samples = samples_of(session, job.id)
        result = vote(samples, EmbeddingCache(load_embedder()), config, rounds=job.rounds_done, stop="fixed",
                      generator=job.model)  # fmt: skip
        reason = next_step(result, config)
        save_votes(session, job.id, samples)
        if reason is None and not job.cancel_requested:
            next_round = job.rounds_done
        else:
            result.stop_reason = reason or "budget"
            finish(session, job, result)
            return
    from workers.gpu.tasks import sample_round

    sample_round.delay(job_id, next_round)
