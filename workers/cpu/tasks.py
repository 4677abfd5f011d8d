"""CPU worker: a job's vote (embed, cluster, bound; another round or the result), and the sweeper,
which re-sends the next step of jobs, audits and robustify runs whose message was lost."""

from __future__ import annotations

from shared.audits.steps import sweep_audits
from shared.config import get_settings
from shared.jobs.steps import sweep_jobs, vote
from shared.pipeline import Step
from shared.robust_models.steps import sweep_robust_models
from workers.celery_app import send, task


@task(Step.AGGREGATE)
def aggregate(job_id: str) -> None:
    send(vote(get_settings(), job_id))


@task(Step.SWEEP)
def sweep() -> int:
    """Returns how many messages it re-sent."""
    settings = get_settings()
    messages = sweep_jobs(settings) + sweep_audits(settings) + sweep_robust_models(settings)
    send(messages)
    return len(messages)
