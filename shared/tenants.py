"""Tenants and their API keys. A key is shown once; only its SHA-256 is stored (keys are 256-bit
random tokens, so a slow password hash adds nothing), with a short prefix to tell keys apart. A
revoked key is refused from the next request on (every request looks its key up)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound
from shared.models import ApiKey, Tenant

KEY_PREFIX = "sg_"
SHOWN_PREFIX = 10
LAST_USED_EVERY = timedelta(minutes=1)  # ``last_used_at`` is written at most this often per key, not per request


class UnknownTenant(NotFound, ValueError):
    """No tenant of that name: a 404 over the API, a ``ValueError`` for the CLI and the launcher."""


@dataclass(frozen=True)
class KeyInfo:
    """What an operator sees of a key (never the key itself)."""

    id: uuid.UUID
    prefix: str
    name: str | None
    tenant: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


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
        raise UnknownTenant(f"no tenant named {name!r}")
    return tenant


def create_api_key(session: Session, *, tenant: Tenant, name: str | None = None) -> tuple[ApiKey, str]:
    """A new key for ``tenant``: the row, and the plaintext key (not stored anywhere)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(tenant_id=tenant.id, prefix=key[:SHOWN_PREFIX], key_hash=hash_key(key), name=name)
    session.add(row)
    session.flush()
    return row, key


def active_key(session: Session, key: str) -> ApiKey | None:
    """The row of ``key`` if it exists and is not revoked (its ``last_used_at`` refreshed), else None."""
    found = authenticate(session, key)
    return found[0] if found is not None else None


# every request runs it: built once (building a statement costs about what running it does)
ACTIVE_KEY_AND_TENANT = (
    select(ApiKey, Tenant)
    .join(Tenant, Tenant.id == ApiKey.tenant_id)
    .where(ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
)


def authenticate(session: Session, key: str) -> tuple[ApiKey, Tenant] | None:
    """The active (not revoked) row of ``key`` and its tenant, in one query; its ``last_used_at``
    refreshed at most every ``LAST_USED_EVERY``. None for an unknown or revoked key."""
    found = session.execute(ACTIVE_KEY_AND_TENANT, {"key_hash": hash_key(key)}).first()
    if found is None:
        return None
    row, tenant = found
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_EVERY:
        row.last_used_at = now
    return row, tenant


def list_api_keys(session: Session, *, tenant: str | None = None) -> list[KeyInfo]:
    """Every key (of one tenant, by name), oldest first."""
    query = select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)
    if tenant is not None:
        query = query.where(Tenant.id == get_tenant(session, name=tenant).id)
    rows = session.execute(query.order_by(ApiKey.created_at, ApiKey.id)).all()
    return [key_info(row, name) for row, name in rows]


def key_info(row: ApiKey, tenant: str) -> KeyInfo:
    return KeyInfo(row.id, row.prefix, row.name, tenant, row.created_at, row.revoked_at, row.last_used_at)


def find_api_key(session: Session, ref: str) -> ApiKey:
    """A key by its id or its shown prefix; a prefix two keys share names neither (use the id)."""
    try:
        rows = [row] if (row := session.get(ApiKey, uuid.UUID(ref))) else []
    except ValueError:
        rows = list(session.scalars(select(ApiKey).where(ApiKey.prefix == ref)))
    if not rows:
        raise NotFound(f"no API key {ref!r}")
    if len(rows) > 1:
        raise Conflict(f"{len(rows)} keys have the prefix {ref!r}; name one by its id")
    return rows[0]


def revoke_api_key(session: Session, ref: str) -> KeyInfo:
    """Revoke the key ``ref`` (id or prefix) from now on; revoking it again changes nothing."""
    row = find_api_key(session, ref)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.flush()
    tenant = session.get(Tenant, row.tenant_id)
    assert tenant is not None
    return key_info(row, tenant.name)
