"""Webhook events and their schedule (``WebhookEvent`` rows): made when a job or audit finishes,
due attempts claimed by the beat's ``deliver_due``, settled after each attempt, redelivered.

The schedule lives in the database, not in delayed broker messages (which Redis hands out again
once they outlive its visibility timeout). An attempt is claimed — its number written, and a lease
until which nobody sends it again — before its message goes; after the attempt, the next one is due
after the schedule's delay. A claimed attempt never made (its message lost, its worker dead) is
sent again once its lease ends, under the same number; a message whose attempt is not the event's
claimed one, or is recorded already, does nothing (``shared.webhooks.delivery``). So each attempt
number is made at most once, and a lost message delays an event but never costs it an attempt.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared import pipeline
from shared.config import Settings
from shared.db import session_scope
from shared.models import Audit, Delivery, Job, WebhookEvent
from shared.pipeline import Message
from shared.webhooks.policy import Outcome, retry_delay

CLAIM_BATCH = 200  # due attempts claimed per beat tick (the rest on the next)


def schedule_webhook(session: Session, settings: Settings, subject: Job | Audit | None) -> None:
    """A finished job's (or audit's) webhook event, its first attempt claimed: the message the
    finish sends makes it (if that message is lost, the attempt is sent again when its lease ends).
    Nothing for None, an unfinished subject, one without a callback, an audit's defense job, or an
    event that exists."""
    if (
        subject is None
        or subject.finished_at is None
        or not subject.callback_url
        or getattr(subject, "audit_item_id", None)
    ):
        return
    now = datetime.now(UTC)
    earlier = session.scalar(select(func.count(Delivery.id)).where(owned_by(Delivery, subject))) or 0
    session.execute(
        insert(WebhookEvent)
        .values(
            id=uuid.uuid4(),
            tenant_id=subject.tenant_id,
            **owner(subject),
            state="pending",
            attempts=earlier + 1,  # a job finished before schedules existed may have deliveries
            retry=0,
            next_attempt_at=now + lease(settings),
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )


def locked_event(session: Session, settings: Settings, subject: Job | Audit) -> WebhookEvent:
    """The subject's event, locked until the transaction ends (made now if its finish did not)."""
    query = select(WebhookEvent).where(owned_by(WebhookEvent, subject)).with_for_update()
    if (event := session.scalar(query)) is None:
        schedule_webhook(session, settings, subject)
        event = session.scalar(query)
    assert event is not None
    return event


def owner(subject: Job | Audit) -> dict[str, uuid.UUID]:
    """An event's (or a delivery row's) link to what it reports on."""
    return {"audit_id": subject.id} if isinstance(subject, Audit) else {"job_id": subject.id}


def owned_by(table: type[WebhookEvent] | type[Delivery], subject: Job | Audit) -> ColumnElement[bool]:
    return (table.audit_id if isinstance(subject, Audit) else table.job_id) == subject.id


def recorded(session: Session, event: WebhookEvent, number: int) -> bool:
    """Attempt ``number`` of the event was made (its delivery row exists)."""
    owner = Delivery.audit_id == event.audit_id if event.audit_id else Delivery.job_id == event.job_id
    return session.scalar(select(Delivery.id).where(owner, Delivery.attempt == number).limit(1)) is not None


def due_attempts(settings: Settings) -> list[Message]:
    """Claim every pending event whose next attempt is due, or whose claimed attempt's lease ran
    out unmade (rows another claimer holds are skipped); the claims are committed before the
    messages go. An event whose schedule is used up is exhausted."""
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        due = session.scalars(
            select(WebhookEvent)
            .where(WebhookEvent.state == "pending", WebhookEvent.next_attempt_at <= now)
            .order_by(WebhookEvent.next_attempt_at)
            .limit(CLAIM_BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        claimed = [event for event in due if claim(session, event, settings, now)]
        return pipeline.due_webhooks(claimed)


def claim(session: Session, event: WebhookEvent, settings: Settings, now: datetime) -> bool:
    """The due event's attempt to send: the claimed one again if it was never made, else the next
    (False: the schedule is used up, the event exhausted)."""
    if recorded(session, event, event.attempts):
        if event.retry >= len(settings.webhook_retry_delays()):
            end(event, "exhausted", now)
            return False
        event.attempts, event.retry = event.attempts + 1, event.retry + 1
    event.next_attempt_at, event.updated_at = now + lease(settings), now
    return True


def start_series(event: WebhookEvent, settings: Settings, now: datetime) -> int:
    """A redelivery: a new series of attempts (the whole schedule again); the first one's number."""
    event.attempts, event.retry, event.state, event.updated_at = event.attempts + 1, 0, "pending", now
    event.next_attempt_at = now + lease(settings)
    return event.attempts


def is_claimed(session: Session, event: WebhookEvent, number: int) -> bool:
    """Attempt ``number`` is the event's claimed one and not made yet (else: a duplicate, or a
    message that came after a later attempt was claimed)."""
    return event.state == "pending" and event.attempts == number and not recorded(session, event, number)


def settle(event: WebhookEvent, outcome: Outcome, settings: Settings, now: datetime) -> None:
    """After an attempt: delivered, given up (not retryable, or the schedule used up), or pending
    with the next attempt due after the schedule's delay — later if the receiver's Retry-After asks
    (capped)."""
    if outcome.delivered:
        end(event, "delivered", now)
    elif not outcome.retry:
        end(event, "failed", now)
    elif event.retry >= len(settings.webhook_retry_delays()):
        end(event, "exhausted", now)
    else:
        wait = next_delay(settings, event.retry)
        if outcome.retry_after_s is not None:
            wait = max(wait, timedelta(seconds=min(outcome.retry_after_s, settings.webhook_retry_after_cap_s)))
        event.next_attempt_at, event.updated_at = now + wait, now


def end(event: WebhookEvent, state: str, now: datetime) -> None:
    event.state, event.next_attempt_at, event.updated_at = state, None, now


def lease(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.webhook_attempt_lease_s)


def next_delay(settings: Settings, retry: int) -> timedelta:
    delays = settings.webhook_retry_delays()
    return timedelta(seconds=retry_delay(delays, retry, settings.webhook_jitter, random.Random()))


def tenant_events(session: Session, tenant_id: uuid.UUID, state: str | None, limit: int) -> list[WebhookEvent]:
    """A tenant's webhook events, newest first (``state``: only those)."""
    query = select(WebhookEvent).where(WebhookEvent.tenant_id == tenant_id)
    if state is not None:
        query = query.where(WebhookEvent.state == state)
    return list(session.scalars(query.order_by(WebhookEvent.created_at.desc(), WebhookEvent.id).limit(limit)))


def event_subject(session: Session, event: WebhookEvent) -> Job | Audit:
    """The job or audit an event reports on."""
    subject = session.get(Audit, event.audit_id) if event.audit_id else session.get(Job, event.job_id)
    assert subject is not None  # deleting it deletes the event
    return subject
