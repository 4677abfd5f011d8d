"""Webhook worker: one signed attempt per task; a retry is a new message with a countdown."""

from __future__ import annotations

from shared.config import get_settings
from shared.models import Audit, Job
from shared.pipeline import Step
from shared.webhooks.delivery import deliver as deliver_event
from workers.celery_app import send, task


@task(Step.DELIVER)
def deliver(job_id: str, retry: int) -> None:
    send(deliver_event(get_settings(), Job, job_id, retry))


@task(Step.DELIVER_AUDIT)
def deliver_audit(audit_id: str, retry: int) -> None:
    send(deliver_event(get_settings(), Audit, audit_id, retry))
