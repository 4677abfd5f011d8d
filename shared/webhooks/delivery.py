"""Deliveries: one attempt of an event's webhook (signed, POSTed to the checked address, recorded,
settled on the event's schedule), and the event's payload. The schedule is
``shared.webhooks.schedule``, the policy ``shared.webhooks.policy``."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import session_scope
from shared.errors import Invalid
from shared.jobs.store import result_of
from shared.models import Audit, Delivery, Job, WebhookEndpoint, WebhookEvent
from shared.observability import events, tracing
from shared.webhooks import transport
from shared.webhooks.endpoints import active_secrets, endpoint_for
from shared.webhooks.policy import Outcome, Unresolved, classify
from shared.webhooks.schedule import end, is_claimed, locked_event, owner, settle, start_series
from shared.webhooks.signing import headers

Subject = TypeVar("Subject", Job, Audit)


def deliver(settings: Settings, model: type[Subject], subject_id: str, number: int) -> None:
    """Attempt ``number`` of a finished job's (or audit's) webhook, at most once: under the event's
    row lock, and only if it is the attempt the event claimed and has not recorded (a duplicate or
    late message does nothing); 0 starts a new series (a redelivery). The POST, its record and its
    settlement share one transaction: a worker that dies mid-attempt records nothing, and the
    schedule's next attempt comes due."""
    with session_scope(settings.database_url) as session:
        subject = session.get(model, uuid.UUID(subject_id))
        if subject is None or subject.finished_at is None or not subject.callback_url:
            return
        event, now = locked_event(session, settings, subject), datetime.now(UTC)
        number = number or start_series(event, settings, now)
        if not is_claimed(session, event, number):
            return
        endpoint = endpoint_for(session, subject.tenant_id, subject.callback_url)
        if endpoint is None or not endpoint.enabled:
            record_skipped(session, subject, endpoint, event, number)
            return
        with tracing.span("webhook.attempt", attempt=number, tenant_id=subject.tenant_id, **owner(subject)):
            outcome = attempt(session, settings, subject, endpoint, number)
        settle(event, outcome, settings, datetime.now(UTC))


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


def attempt(session: Session, s: Settings, subject: Job | Audit, endpoint: WebhookEndpoint, number: int) -> Outcome:
    """POST once and record it as attempt ``number``, whatever happened (a refused or malformed URL,
    DNS, TLS, a timeout: the error is the record); 410 disables the endpoint."""
    now = datetime.now(UTC)
    body = json.dumps(payload(subject, s.public_url), separators=(",", ":")).encode()
    msg = message_id(subject)
    status, error, retry_after, started = None, None, None, time.perf_counter()
    refused: Outcome | None = None
    try:
        response = transport.post(
            endpoint.url,
            body,
            headers(active_secrets(endpoint, now), msg, int(now.timestamp()), body),
            timeout_s=s.webhook_timeout_s,
            allowlist=s.allowed_callback_hosts(),
        )
        status, retry_after = response.status_code, response.headers.get("retry-after")
    except (Invalid, httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError) as exc:  # refused, malformed: not retried
        error, refused = f"{type(exc).__name__}: {exc}", Outcome(delivered=False, retry=False)
    except (Unresolved, httpx.HTTPError) as exc:  # DNS, connection, TLS, timeout: retried
        error = f"{type(exc).__name__}: {exc}"
    outcome = refused or classify(status, retry_after, now)
    tracing.annotate(status_code=status, error=error, delivered=outcome.delivered)
    events.webhook_attempted(number, status, error, time.perf_counter() - started)
    session.add(
        Delivery(
            endpoint_id=endpoint.id,
            **owner(subject),
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


def record_skipped(
    session: Session, subject: Job | Audit, endpoint: WebhookEndpoint | None, event: WebhookEvent, number: int
) -> None:
    """An attempt that could not be made (endpoint deleted or disabled) ends the event ``skipped``
    (a redelivery once the endpoint is back starts again); recorded when the endpoint still exists."""
    now = datetime.now(UTC)
    end(event, "skipped", now)
    if endpoint is None:
        return  # deliveries belong to an endpoint; a deleted one leaves nothing to record against
    session.add(
        Delivery(
            endpoint_id=endpoint.id,
            **owner(subject),
            message_id=message_id(subject),
            attempt=number,
            attempted_at=now,
            error=f"endpoint disabled: {endpoint.disabled_reason}",
        )
    )
