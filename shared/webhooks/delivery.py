"""Deliveries: the deliver step (one signed attempt, recorded, and the retry that follows), the
event payload. The retry policy is ``shared.webhooks.policy``."""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared import pipeline
from shared.config import Settings
from shared.db import session_scope
from shared.errors import Invalid
from shared.jobs.store import result_of
from shared.models import Audit, Delivery, Job, WebhookEndpoint
from shared.pipeline import Message
from shared.webhooks.endpoints import active_secrets, endpoint_for
from shared.webhooks.policy import Outcome, check_url, classify
from shared.webhooks.signing import headers

Subject = TypeVar("Subject", Job, Audit)


def deliver(settings: Settings, model: type[Subject], subject_id: str, retry: int) -> list[Message]:
    """One signed attempt of a finished job's (or audit's) webhook, recorded; the retry the policy
    asks for follows, after its backoff. ``retry`` counts attempts in this series (0 first); a
    redelivery starts a new series."""
    with session_scope(settings.database_url) as session:
        subject = session.get(model, uuid.UUID(subject_id))
        if subject is None or subject.finished_at is None or not subject.callback_url:
            return []
        endpoint = endpoint_for(session, subject.tenant_id, subject.callback_url)
        column = Delivery.audit_id if isinstance(subject, Audit) else Delivery.job_id
        number = (session.scalar(select(func.count(Delivery.id)).where(column == subject.id)) or 0) + 1
        if endpoint is None or not endpoint.enabled:
            record_skipped(session, subject, endpoint, number)
            return []
        outcome = attempt(session, settings, subject, endpoint, number, retry, random.Random())
        return pipeline.after_attempt(subject, retry, outcome)


def payload(subject: Job | Audit, public_url: str) -> dict[str, Any]:
    """Thin: ids, status, the answer (or an audit's progress) and a link; the rest is one GET away."""
    base = public_url.rstrip("/")
    if isinstance(subject, Audit):
        return {
            "type": "audit.completed",
            "timestamp": (subject.finished_at or datetime.now(UTC)).isoformat(),
            "data": {
                "audit_id": str(subject.id),
                "status": subject.status,
                "done": subject.done,
                "total": subject.total,
                "url": f"{base}/v1/audits/{subject.id}",
                "report": f"{base}/v1/audits/{subject.id}/report?format=html" if subject.report else None,
            },
        }
    result = result_of(subject)
    return {
        "type": "job.completed",
        "timestamp": (subject.finished_at or datetime.now(UTC)).isoformat(),
        "data": {
            "job_id": str(subject.id),
            "status": subject.status,
            "answer": result.answer if result else None,
            "abstained": result.abstained if result else None,
            "url": f"{base}/v1/jobs/{subject.id}",
        },
    }


def message_id(subject: Job | Audit) -> str:
    """The ``webhook-id``: one per job or audit event, the same on every retry and redelivery (receivers dedupe)."""
    return f"msg_{subject.id.hex}"


def owner(subject: Job | Audit) -> dict[str, Any]:
    """The delivery row's link to what it reports on."""
    return {"audit_id": subject.id} if isinstance(subject, Audit) else {"job_id": subject.id}


def attempt(
    session: Session,
    s: Settings,
    job: Job | Audit,
    endpoint: WebhookEndpoint,
    number: int,
    retry: int,
    rng: random.Random,
) -> Outcome:
    """POST once, record it as attempt ``number`` of the job (or audit), apply 410 → disabled. ``retry`` is
    the attempt's place in its series (the backoff and the attempt cap count it)."""
    now = datetime.now(UTC)
    body = json.dumps(payload(job, s.public_url), separators=(",", ":")).encode()
    msg = message_id(job)
    status, error, retry_after, refused, started = None, None, None, False, time.perf_counter()
    try:
        check_url(endpoint.url, s.allowed_callback_hosts())  # again: DNS may have changed since registration
    except Invalid as exc:  # a refused address is not retried
        error, refused = str(exc), True
    else:
        try:
            hdrs = headers(active_secrets(endpoint, now), msg, int(now.timestamp()), body)
            response = httpx.post(endpoint.url, content=body, headers=hdrs, timeout=s.webhook_timeout_s)
            status, retry_after = response.status_code, response.headers.get("retry-after")
        except httpx.HTTPError as exc:  # timeouts and connection errors: retried
            error = f"{type(exc).__name__}: {exc}"
    outcome = Outcome(delivered=False, retry=False) if refused else classify(status, retry, rng, retry_after)
    session.add(
        Delivery(
            endpoint_id=endpoint.id,
            **owner(job),
            message_id=msg,
            attempt=number,
            attempted_at=now,
            status_code=status,
            latency_ms=(time.perf_counter() - started) * 1e3,
            error=error,
        )
    )
    if outcome.disable:
        endpoint.enabled, endpoint.disabled_reason = False, f"the receiver answered {status} Gone at {now.isoformat()}"
    return outcome


def record_skipped(session: Session, job: Job | Audit, endpoint: WebhookEndpoint | None, number: int) -> None:
    """A delivery that could not be attempted (endpoint deleted or disabled), recorded as such."""
    if endpoint is None:
        return  # deliveries belong to an endpoint; a deleted one leaves nothing to record against
    session.add(
        Delivery(
            endpoint_id=endpoint.id,
            **owner(job),
            message_id=message_id(job),
            attempt=number,
            attempted_at=datetime.now(UTC),
            error=f"endpoint disabled: {endpoint.disabled_reason}",
        )
    )
