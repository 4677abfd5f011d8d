"""A tenant's webhook endpoints: register (URL checked), rotate secrets, the secrets that sign."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import Conflict, Invalid
from shared.models import Audit, Job, WebhookEndpoint
from shared.webhooks.policy import check_url
from shared.webhooks.signing import new_secret

ROTATION_GRACE = timedelta(hours=24)  # the previous secret keeps signing this long after a rotation


def register_endpoint(session: Session, s: Settings, tenant_id: uuid.UUID, url: str) -> WebhookEndpoint:
    check_url(url, s.allowed_callback_hosts())
    if endpoint_for(session, tenant_id, url) is not None:
        raise Conflict(f"an endpoint for {url} is already registered")
    endpoint = WebhookEndpoint(tenant_id=tenant_id, url=url, secrets={"current": new_secret()}, enabled=True)
    try:
        with session.begin_nested():  # a concurrent registration of the same URL meets the unique key
            session.add(endpoint)
    except IntegrityError as exc:
        raise Conflict(f"an endpoint for {url} is already registered") from exc
    return endpoint


def rotate_secret(endpoint: WebhookEndpoint, now: datetime) -> str:
    """A new current secret; the old one keeps signing (a second signature) for ``ROTATION_GRACE``."""
    old = endpoint.secrets["current"]
    endpoint.secrets = {"current": new_secret(), "previous": old, "previous_until": (now + ROTATION_GRACE).isoformat()}
    return endpoint.secrets["current"]


def active_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    out = [endpoint.secrets["current"]]
    until = endpoint.secrets.get("previous_until")
    if endpoint.secrets.get("previous") and until and datetime.fromisoformat(until) > now:
        out.append(endpoint.secrets["previous"])
    return out


def endpoint_for(session: Session, tenant_id: uuid.UUID, url: str) -> WebhookEndpoint | None:
    return session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.url == url)
    )


def callback_refusal(session: Session, tenant_id: uuid.UUID, url: str) -> str | None:
    """Why ``url`` can't be called back (not one of the tenant's endpoints, or disabled), or None."""
    endpoint = endpoint_for(session, tenant_id, url)
    if endpoint is None:
        return f"callback_url {url} is not a registered webhook endpoint; register it with POST /v1/webhooks"
    if not endpoint.enabled:
        return f"the webhook endpoint for {url} is disabled ({endpoint.disabled_reason})"
    return None


def check_callback(session: Session, tenant_id: uuid.UUID, url: str | None) -> None:
    """A job's callback URL must be one of the tenant's enabled endpoints (so it has a secret)."""
    if url is not None and (reason := callback_refusal(session, tenant_id, url)):
        raise Invalid(reason)


def check_redelivery(session: Session, subject: Job | Audit) -> None:
    """A job's (audit's) webhook can be sent again once it finished, to a callback that is still enabled."""
    kind = "audit" if isinstance(subject, Audit) else "job"
    if subject.finished_at is None:
        raise Conflict(f"{kind} {subject.id} has not finished; its webhook is sent when it does")
    if not subject.callback_url:
        raise Conflict(f"{kind} {subject.id} has no callback_url")
    if reason := callback_refusal(session, subject.tenant_id, subject.callback_url):
        raise Conflict(reason)
