"""Request dependencies: settings, a database session, the object store, the queue, the calling tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

from api.rate_limit import RateLimits
from shared.config import Settings
from shared.db import get_engine
from shared.models import Tenant
from shared.pipeline import Sender
from shared.storage import ObjectStore
from shared.tenants import active_key


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """Commits after the route (routes may commit earlier, e.g. before enqueueing)."""
    with sessionmaker(get_engine(settings.database_url), expire_on_commit=False)() as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session)]


def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_queue(request: Request) -> Sender:
    """Where routes send what ``shared.pipeline`` says runs next (after their commit)."""
    return request.app.state.queue


QueueDep = Annotated[Sender, Depends(get_queue)]


def get_rate_limits(request: Request) -> RateLimits:
    return request.app.state.rate_limits


RateLimitsDep = Annotated[RateLimits, Depends(get_rate_limits)]


def bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def unauthorized(request: Request, limits: RateLimits, what: str) -> HTTPException:
    """401 for a missing or wrong credential, counted against the client address's limit (429 past it)."""
    limits.hit_address(request)
    return HTTPException(401, f"missing or invalid {what}", headers={"WWW-Authenticate": "Bearer"})


def current_tenant(
    request: Request,
    session: SessionDep,
    limits: RateLimitsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Tenant:
    """The tenant of the request's active API key (a revoked key is refused at once), its rate limit counted."""
    key = active_key(session, token) if (token := bearer(authorization)) else None
    if key is None:
        raise unauthorized(request, limits, "API key")
    limits.hit_key(key.id)
    tenant = session.get(Tenant, key.tenant_id)
    assert tenant is not None  # keys are deleted with their tenant
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
