"""Media rows and objects: the one way media is saved (API uploads, audits' images)."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.models import Media
from shared.storage import ObjectStore, media_key


def save_media(
    session: Session, store: ObjectStore, *, tenant_id: uuid.UUID, data: bytes, content_type: str, modality: str
) -> Media:
    """The tenant's media row for ``data``, stored once in the object store and once in the table
    (concurrent uploads of the same bytes meet on the unique key instead of failing). Bytes the
    tenant uploaded before cost one query: a row is written only after its object was stored."""
    sha = ObjectStore.sha256(data)
    if (known := find_media(session, tenant_id, sha)) is not None:
        return known
    key = media_key(str(tenant_id), sha)
    store.put(key, data, content_type)  # content-addressed: storing the same bytes again changes nothing
    row = {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "sha256": sha,
        "content_type": content_type,
        "modality": modality,
        "size_bytes": len(data),
        "object_key": key,
    }
    insert_new = insert(Media).values(row).on_conflict_do_nothing(index_elements=["tenant_id", "sha256"])
    inserted = session.scalar(insert_new.returning(Media))
    media = inserted if inserted is not None else find_media(session, tenant_id, sha)  # None: a concurrent upload's
    assert media is not None
    return media


# run by every upload and multipart submit: built once (building costs about what running does)
MEDIA_BY_CONTENT = select(Media).where(Media.tenant_id == bindparam("tenant_id"), Media.sha256 == bindparam("sha256"))


def find_media(session: Session, tenant_id: uuid.UUID, sha256: str) -> Media | None:
    return session.scalar(MEDIA_BY_CONTENT, {"tenant_id": tenant_id, "sha256": sha256})
