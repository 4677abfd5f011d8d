"""A submission's checks against the deployment's bounds, and Idempotency-Keys: a job's (on the job
row) and those of audits, dataset uploads and webhook endpoints (``IdempotencyKey`` rows). A key is
remembered for ``idempotency_key_ttl_s``; after that a request with it makes something new."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from shared.backends.registry import detect_backend
from shared.config import Settings
from shared.db import session_scope
from shared.errors import InProgress, Invalid
from shared.jobs.options import to_params
from shared.models import IdempotencyKey, Job
from shared.smoothing.types import SmoothConfig


def request_hash(*, media_sha256: str, prompt: str, model: str, config: SmoothConfig, callback_url: str | None) -> str:
    """A submission's fingerprint: the same Idempotency-Key with another body is refused."""
    body = {
        "media": media_sha256,
        "prompt": prompt,
        "model": model,
        "params": to_params(config),
        "callback_url": callback_url,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_options(s: Settings, *, model: str | None, num_samples: int, max_new_tokens: int) -> str:
    """The deployment's bounds on options; returns the model to use."""
    known = s.model_ids()
    chosen = model or s.model
    if chosen not in known:
        raise Invalid(f"unknown model {chosen!r}; known models: {', '.join(known)}")
    if num_samples > s.max_num_samples:
        raise Invalid(f"num_samples is {num_samples}; the limit is {s.max_num_samples}")
    if max_new_tokens > s.max_new_tokens:
        raise Invalid(f"max_new_tokens is {max_new_tokens}; the limit is {s.max_new_tokens}")
    return chosen


def claim_idempotency_key(session: Session, tenant_id: uuid.UUID, key: str) -> None:
    """Hold the key for this transaction; ``InProgress`` while another request with it is being processed."""
    got = session.scalar(select(func.pg_try_advisory_xact_lock(func.hashtextextended(f"{tenant_id}:{key}", 0))))
    if not got:
        raise InProgress(f"a request with Idempotency-Key {key!r} is still in progress; retry shortly")


def expired(created_at: datetime, ttl_s: float) -> bool:
    return created_at < datetime.now(UTC) - timedelta(seconds=ttl_s)


def replay(session: Session, tenant_id: uuid.UUID, key: str | None, request_hash: str, ttl_s: float) -> Job | None:
    """The job an earlier request with this key made (same body), or None for a new (or expired) key."""
    if key is None:
        return None
    claim_idempotency_key(session, tenant_id, key)
    job = session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))
    if job is not None and expired(job.created_at, ttl_s):
        job.idempotency_key = None  # the key is free for the new job
        session.flush()
        return None
    if job is not None and job.request_hash != request_hash:
        raise Invalid(f"Idempotency-Key {key!r} was used with a different request body")
    return job


def body_hash(body: object) -> str:
    """A request body's fingerprint (JSON-able), for an ``IdempotencyKey``."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def remembered(
    session: Session, tenant_id: uuid.UUID, operation: str, key: str | None, request_hash: str, ttl_s: float
) -> uuid.UUID | None:
    """The id of what an earlier ``operation`` request with this key made (same body), or None for a
    new (or expired) key; the key is held until the transaction ends (``InProgress`` meanwhile)."""
    if key is None:
        return None
    claim_idempotency_key(session, tenant_id, f"{operation}:{key}")
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.operation == operation, IdempotencyKey.key == key
        )
    )
    if row is not None and expired(row.created_at, ttl_s):
        session.delete(row)
        session.flush()
        return None
    if row is not None and row.request_hash != request_hash:
        raise Invalid(f"Idempotency-Key {key!r} was used with a different request body")
    return row.resource_id if row is not None else None


def remember(
    session: Session, tenant_id: uuid.UUID, operation: str, key: str | None, request_hash: str, resource_id: uuid.UUID
) -> None:
    """Keep what a request with this key made (no key: nothing to keep)."""
    if key is not None:
        session.add(
            IdempotencyKey(
                tenant_id=tenant_id, operation=operation, key=key, request_hash=request_hash, resource_id=resource_id
            )
        )


def forget_expired_keys(settings: Settings) -> int:
    """Delete the ``IdempotencyKey`` rows older than ``idempotency_key_ttl_s`` (the sweeper's; a
    reused key past it is deleted at its reuse anyway); how many."""
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.idempotency_key_ttl_s)
    with session_scope(settings.database_url) as session:
        gone = session.scalars(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff).returning(IdempotencyKey.id)
        )
        return len(gone.all())


def check_modality(model: str, modality: str, subject: str = "this file") -> None:
    """A model takes one modality (its backend says which): a mismatch is refused at submit instead
    of failing the job (or audit: ``subject`` names its set) at model load."""
    takes = "audio" if detect_backend(model) == "hf-audio" else "image"
    if modality != takes:
        raise Invalid(f"model {model!r} takes {takes} input; {subject} is {modality}")
