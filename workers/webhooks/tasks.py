"""Webhook worker: one signed attempt per task; retries are re-sent with backoff (countdown)."""

from __future__ import annotations

import random
import uuid

from sqlalchemy import func, select

from shared.config import get_settings
from shared.db import session_scope
from shared.models import Audit, Delivery, Job
from shared.webhooks.delivery import attempt, record_skipped
from shared.webhooks.endpoints import endpoint_for
from workers.celery_app import TaskQueue, send, task


@task(TaskQueue.WEBHOOKS, "webhooks.deliver")
def deliver(job_id: str, retry: int) -> None:
    """``retry`` counts attempts in this series (0 first); a redelivery starts a new series."""
    deliver_event(Job, job_id, retry, "webhooks.deliver")


@task(TaskQueue.WEBHOOKS, "webhooks.deliver_audit")
def deliver_audit(audit_id: str, retry: int) -> None:
    """An audit's completion webhook, with the same signing, retries and records as a job's."""
    deliver_event(Audit, audit_id, retry, "webhooks.deliver_audit")


def deliver_event(model: type[Job] | type[Audit], subject_id: str, retry: int, task_name: str) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        subject = session.get(model, uuid.UUID(subject_id))
        if subject is None or subject.finished_at is None or not subject.callback_url:
            return
        endpoint = endpoint_for(session, subject.tenant_id, subject.callback_url)
        column = Delivery.audit_id if model is Audit else Delivery.job_id
        number = session.scalar(select(func.count(Delivery.id)).where(column == subject.id)) + 1
        if endpoint is None or not endpoint.enabled:
            record_skipped(session, subject, endpoint, number)
            return
        outcome = attempt(session, settings, subject, endpoint, number, retry, random.Random())
    if outcome.retry:
        send(task_name, [subject_id, retry + 1], countdown=outcome.delay_s)
