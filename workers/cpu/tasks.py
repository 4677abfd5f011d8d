"""CPU worker: a job's vote (embed, cluster, bound; another round or the result), the dispatcher
(waiting jobs onto the GPU queue as their tenants' slots free up), and the sweeper, which re-sends
the next step of jobs, audits and robustify runs whose worker died or whose message was lost (and
forgets expired Idempotency-Keys)."""

from __future__ import annotations

from shared.audits.datasets import sweep_datasets
from shared.audits.steps import sweep_audits
from shared.config import get_settings
from shared.jobs.dispatch import dispatch as dispatch_jobs
from shared.jobs.intake import forget_expired_keys
from shared.jobs.steps import sweep_jobs, vote
from shared.pipeline import Step
from shared.robust_models.steps import sweep_robust_models
from workers.celery_app import send, sender, task


@task(Step.AGGREGATE)
def aggregate(job_id: str) -> None:
    send(vote(get_settings(), job_id))


@task(Step.SWEEP)
def sweep() -> int:
    """Returns how many messages it re-sent."""
    settings = get_settings()
    messages = sweep_jobs(settings) + sweep_audits(settings) + sweep_robust_models(settings) + sweep_datasets(settings)
    send(messages)
    forget_expired_keys(settings)
    return len(messages)


@task(Step.DISPATCH)
def dispatch(tenant_id: str | None = None) -> int:
    """Returns how many jobs it sent."""
    return dispatch_jobs(get_settings(), sender(), tenant_id)
