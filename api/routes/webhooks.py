"""Webhook endpoints: register (the secret is shown once), list, rotate the secret, re-enable, delete;
webhook events: list (e.g. the exhausted ones), redeliver."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentTenant, IdempotencyKeyHeader, QueueDep, SessionDep, SettingsDep
from api.schemas import COMMON_PROBLEMS, WebhookCreate, WebhookEventPublic, WebhookPublic, answer, problems
from shared import pipeline
from shared.errors import NotFound
from shared.jobs.intake import body_hash, remember, remembered
from shared.models import Tenant, WebhookEndpoint, WebhookEvent
from shared.webhooks.endpoints import check_redelivery, register_endpoint, rotate_secret
from shared.webhooks.schedule import event_subject, tenant_events

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=COMMON_PROBLEMS)


def to_public(endpoint: WebhookEndpoint, secret: str | None = None) -> WebhookPublic:
    return WebhookPublic(
        id=endpoint.id,
        url=endpoint.url,
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        created_at=endpoint.created_at,
        secret=secret,
    )


def own_endpoint(session: Session, tenant: Tenant, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.tenant_id != tenant.id:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


@router.post(
    "",
    status_code=201,
    response_model=WebhookPublic,
    responses={201: answer("registered (or, replayed, the endpoint this key made)", "Location", "Idempotent-Replayed")}
    | problems(
        _409="an endpoint for this URL exists, or a request with this Idempotency-Key is in progress",
        _422="not http(s), a private address, or a reused Idempotency-Key",
    ),
)
def create_webhook_endpoint(
    body: WebhookCreate,
    response: Response,
    tenant: CurrentTenant,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> WebhookPublic:
    """Jobs name it as ``callback_url``. Private, loopback and link-local addresses are refused
    unless ``SMOOTHGUARD_WEBHOOK_ALLOWLIST`` names the host. The ``whsec_`` secret is shown once —
    and again to a retry with the same ``Idempotency-Key`` (``Idempotent-Replayed: true``)."""
    digest, ttl_s = body_hash({"url": body.url}), settings.idempotency_key_ttl_s
    if (earlier := remembered(session, tenant.id, "webhooks", idempotency_key, digest, ttl_s)) is not None:
        endpoint = own_endpoint(session, tenant, earlier)
        response.headers["Idempotent-Replayed"] = "true"
    else:
        endpoint = register_endpoint(session, settings, tenant.id, body.url)
        remember(session, tenant.id, "webhooks", idempotency_key, digest, endpoint.id)
        session.flush()
        session.refresh(endpoint)  # created_at comes from the database
    response.headers["Location"] = f"/v1/webhooks/{endpoint.id}"
    return to_public(endpoint, endpoint.secrets["current"])


@router.get("", response_model=list[WebhookPublic])
def list_webhook_endpoints(tenant: CurrentTenant, session: SessionDep) -> list[WebhookPublic]:
    rows = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant.id).order_by(WebhookEndpoint.created_at)
    )
    return [to_public(e) for e in rows]


@router.post("/{endpoint_id:uuid}/rotate-secret", response_model=WebhookPublic)
def rotate_webhook_secret(endpoint_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> WebhookPublic:
    """A new secret; for 24 hours deliveries carry a second signature made with the old one."""
    endpoint = own_endpoint(session, tenant, endpoint_id)
    return to_public(endpoint, rotate_secret(endpoint, datetime.now(UTC)))


@router.post("/{endpoint_id:uuid}/enable", response_model=WebhookPublic)
def enable_webhook_endpoint(endpoint_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> WebhookPublic:
    """Turn an endpoint back on after it answered 410 Gone."""
    endpoint = own_endpoint(session, tenant, endpoint_id)
    endpoint.enabled, endpoint.disabled_reason = True, None
    return to_public(endpoint)


@router.delete("/{endpoint_id:uuid}", status_code=204)
def delete_webhook_endpoint(endpoint_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> Response:
    session.delete(own_endpoint(session, tenant, endpoint_id))
    return Response(status_code=204)


@router.get("/events", response_model=list[WebhookEventPublic])
def list_webhook_events(
    tenant: CurrentTenant,
    session: SessionDep,
    state: Literal["pending", "delivered", "exhausted", "failed", "skipped"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[WebhookEvent]:
    """The tenant's webhook events, newest first; ``state=exhausted`` lists those whose every
    scheduled attempt failed (redeliver them once the receiver is back)."""
    return tenant_events(session, tenant.id, state, limit)


@router.post(
    "/events/{event_id}/redeliver",
    status_code=202,
    response_model=WebhookEventPublic,
    responses=problems(_409="the endpoint is disabled or gone"),
)
def redeliver_webhook_event(
    event_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep, queue: QueueDep
) -> WebhookEvent:
    """Send the event again: a new series of attempts on the whole retry schedule, the same ``webhook-id``."""
    event = session.get(WebhookEvent, event_id)
    if event is None or event.tenant_id != tenant.id:
        raise NotFound(f"no webhook event {event_id}")
    subject = event_subject(session, event)
    check_redelivery(session, subject)
    queue.send([pipeline.webhook(subject)])
    return event
