"""Webhook worker: one signed attempt per task; retries are re-sent with backoff (countdown)."""

from __future__ import annotations

import random
import uuid

from sqlalchemy import func, select

from shared.config import get_settings
from shared.db import session_scope
from shared.deliveries import attempt, endpoint_for, record_skipped
from shared.models import Delivery, Job
from workers.celery_app import TaskQueue, send, task


@task(TaskQueue.WEBHOOKS, "webhooks.deliver")
def deliver(job_id: str, retry: int) -> None:
    """``retry`` counts attempts in this series (0 first); a redelivery starts a new series."""
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        job = session.get(Job, uuid.UUID(job_id))
        if job is None or job.finished_at is None or not job.callback_url:
            return
        endpoint = endpoint_for(session, job.tenant_id, job.callback_url)
        number = session.scalar(select(func.count(Delivery.id)).where(Delivery.job_id == job.id)) + 1
        if endpoint is None or not endpoint.enabled:
            record_skipped(session, job, endpoint, number)
            return
        outcome = attempt(session, settings, job, endpoint, number, retry, random.Random())
    if outcome.retry:
        send("webhooks.deliver", [job_id, retry + 1], countdown=outcome.delay_s)
