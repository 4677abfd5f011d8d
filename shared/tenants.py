"""Tenants and their API keys. A key is shown once; only its SHA-256 is stored (keys are 256-bit
random tokens, so a slow password hash adds nothing), with a short prefix to tell keys apart."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.models import ApiKey, Tenant

KEY_PREFIX = "sg_"
SHOWN_PREFIX = 10


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_tenant(session: Session, *, name: str) -> Tenant:
    if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise ValueError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant(session: Session, *, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise ValueError(f"no tenant named {name!r}")
    return tenant


def create_api_key(session: Session, *, tenant: Tenant, name: str | None = None) -> tuple[ApiKey, str]:
    """A new key for ``tenant``: the row, and the plaintext key (not stored anywhere)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(tenant_id=tenant.id, prefix=key[:SHOWN_PREFIX], key_hash=hash_key(key), name=name, revoked=False)
    session.add(row)
    session.flush()
    return row, key


def tenant_for_key(session: Session, key: str) -> Tenant | None:
    """The tenant owning an active ``key``, or None."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked.is_(False)))
    return session.get(Tenant, row.tenant_id) if row else None
