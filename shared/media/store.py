"""Media rows and objects: the one way media is saved (API uploads, audits' images)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Media
from shared.storage import ObjectStore


def save_media(
    session: Session, store: ObjectStore, *, tenant_id: uuid.UUID, data: bytes, content_type: str, modality: str
) -> Media:
    """The tenant's media row for ``data``, stored once in the object store and once in the table
    (concurrent uploads of the same bytes meet on the unique key instead of failing)."""
    key, sha = store.put_media(str(tenant_id), data, content_type)
    row = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "sha256": sha,
        "content_type": content_type,
        "modality": modality,
        "size_bytes": len(data),
        "object_key": key,
    }
    session.execute(insert(Media).values(row).on_conflict_do_nothing(index_elements=["tenant_id", "sha256"]))
    media = session.scalar(select(Media).where(Media.tenant_id == tenant_id, Media.sha256 == sha))
    assert media is not None
    return media
