"""Request dependencies: settings, a database session, the object store, the queue, the calling tenant.

Those that only read the app's state are ``async``: FastAPI runs a plain ``def`` dependency in its
thread pool, a hop that costs more than the dependency itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.rate_limit import RateLimits
from shared.config import Settings
from shared.models import Tenant
from shared.pipeline import Sender
from shared.storage import ObjectStore
from shared.tenants import authenticate


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_session(request: Request) -> AsyncIterator[Session]:
    """Commits after the route (routes may commit earlier, e.g. before enqueueing). Opening the
    session touches no connection; ending its transaction does (then in the thread pool, like the
    route's own database work)."""
    session: Session = request.app.state.sessions()
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except Exception:
        if session.in_transaction():
            await run_in_threadpool(session.rollback)
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


async def get_queue(request: Request) -> Sender:
    """Where routes send what ``shared.pipeline`` says runs next (after their commit)."""
    return request.app.state.queue


QueueDep = Annotated[Sender, Depends(get_queue)]


async def get_rate_limits(request: Request) -> RateLimits:
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
    """The tenant of the request's active API key (a revoked key is refused at once: every request
    looks its key up), its rate limit counted."""
    found = authenticate(session, token) if (token := bearer(authorization)) else None
    if found is None:
        raise unauthorized(request, limits, "API key")
    key, tenant = found
    limits.hit_key(key.id)
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
