"""Webhook worker: one signed attempt per message; the beat's ``deliver_due`` sends the attempts
the database schedule says are due (no delayed messages)."""

from __future__ import annotations

from shared.config import get_settings
from shared.models import Audit, Job
from shared.pipeline import Step
from shared.webhooks.delivery import deliver as deliver_event
from shared.webhooks.schedule import due_attempts
from workers.celery_app import send, task


@task(Step.DELIVER)
def deliver(job_id: str, attempt: int) -> None:
    deliver_event(get_settings(), Job, job_id, attempt)


@task(Step.DELIVER_AUDIT)
def deliver_audit(audit_id: str, attempt: int) -> None:
    deliver_event(get_settings(), Audit, audit_id, attempt)


@task(Step.DELIVER_DUE)
def deliver_due() -> None:
    send(due_attempts(get_settings()))
