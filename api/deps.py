"""Request dependencies: settings, a database session, the object store, the queue, the calling tenant.

Those that only read the app's state are ``async``: FastAPI runs a plain ``def`` dependency in its
thread pool, a hop that costs more than the dependency itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
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


API_KEY = HTTPBearer(
    scheme_name="apiKey", bearerFormat="sg_…", description="an API key (`smoothguard keys create`)", auto_error=False
)
ADMIN_TOKEN = HTTPBearer(scheme_name="adminToken", description="`SMOOTHGUARD_ADMIN_TOKEN`", auto_error=False)
ApiKeyDep = Annotated[HTTPAuthorizationCredentials | None, Depends(API_KEY)]


def bearer(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (any other scheme, or none: None)."""
    return credentials.credentials or None if credentials is not None else None


def unauthorized(request: Request, limits: RateLimits, what: str) -> HTTPException:
    """401 for a missing or wrong credential, counted against the client address's limit (429 past it)."""
    limits.hit_address(request)
    return HTTPException(401, f"missing or invalid {what}", headers={"WWW-Authenticate": "Bearer"})


def current_tenant(
    request: Request,
    session: SessionDep,
    limits: RateLimitsDep,
    credentials: ApiKeyDep,
) -> Tenant:
    """The tenant of the request's active API key (a revoked key is refused at once: every request
    looks its key up), its rate limit counted."""
    found = authenticate(session, token) if (token := bearer(credentials)) else None
    if found is None:
        raise unauthorized(request, limits, "API key")
    key, tenant = found
    limits.hit_key(key.id)
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="a retry with the same key and body gets the first answer (remembered for a while: the"
        " deployment's idempotency_key_ttl_s, 24 h by default)",
    ),
]


def query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route (with its dependencies) declares."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_names(sub)
    return names


async def known_query(request: Request) -> None:
    """An unknown query parameter (a typo: ``?staus=running``) is refused (422), not ignored."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    if unknown := sorted(set(request.query_params) - query_names(dependant)):
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"} for name in unknown]
        )
