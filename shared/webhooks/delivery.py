"""Deliveries: the event payload, one signed attempt, recorded. The retry policy is
``shared.webhooks.policy``."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.models import Audit, Delivery, Job, WebhookEndpoint
from shared.webhooks.endpoints import active_secrets
from shared.webhooks.policy import Outcome, check_url, classify
from shared.webhooks.signing import headers


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
    result = subject.result or {}
    return {
        "type": "job.completed",
        "timestamp": (subject.finished_at or datetime.now(UTC)).isoformat(),
        "data": {
            "job_id": str(subject.id),
            "status": subject.status,
            "answer": result.get("answer"),
            "abstained": result.get("abstained"),
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
    except ValueError as exc:  # a refused address is not retried
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
