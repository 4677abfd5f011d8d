"""Request dependencies: settings, a database session, the object store, the queue, the calling tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db import get_engine
from shared.models import Tenant
from shared.pipeline import Sender
from shared.storage import ObjectStore
from shared.tenants import tenant_for_key


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


def current_tenant(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> Tenant:
    scheme, _, key = (authorization or "").partition(" ")
    tenant = tenant_for_key(session, key) if scheme.lower() == "bearer" and key else None
    if tenant is None:
        raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return tenant


CurrentTenant = Annotated[Tenant, Depends(current_tenant)]
