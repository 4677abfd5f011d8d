"""The service's key moments, each a log line with the ids and, in a worker, a metric: a job
submitted, a round recorded, a job finished, a webhook attempt made. One call where each happens."""

from __future__ import annotations

import logging
from typing import Any

from shared.models import Job
from shared.observability import metrics

log = logging.getLogger("smoothguard")


def job_submitted(job: Job) -> None:
    log.info("job submitted", extra={"job_id": job.id, "tenant_id": job.tenant_id})


def round_done(job: Job, model: str, generations: list[Any]) -> None:
    """A round's generations are recorded (a job's own round or one generated in its company)."""
    tokens = sum(g.num_tokens for g in generations)
    metrics.ROUNDS.labels(model).inc()
    metrics.GENERATIONS.labels(model).inc(len(generations))
    metrics.TOKENS.labels(model).inc(tokens)
    log.info(
        "round %d done: %d candidates, %d tokens",
        job.rounds_done - 1,
        len(generations),
        tokens,
        extra={"job_id": job.id, "tenant_id": job.tenant_id},
    )


def job_finished(job: Job | None) -> None:
    """A job ended (result or failure): its submit-to-finish time."""
    if job is None or job.finished_at is None or job.created_at is None:
        return
    seconds = (job.finished_at - job.created_at).total_seconds()
    metrics.JOB_SECONDS.labels(job.status).observe(max(0.0, seconds))
    log.info(
        "job %s after %.1f s",
        job.status,
        seconds,
        extra={"job_id": job.id, "tenant_id": job.tenant_id, "duration_s": round(seconds, 3)},
    )


def webhook_attempted(number: int, status_code: int | None, error: str | None, seconds: float) -> None:
    """One POST of a webhook (the task's log context names its job or audit)."""
    log.info(
        "webhook attempt %d: %s",
        number,
        status_code if status_code is not None else error,
        extra={"attempt": number, "status_code": status_code, "duration_s": round(seconds, 3)},
    )
