"""Media: upload once, then submit jobs that name it by ``media_id``."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile

from api.deps import CurrentTenant, SessionDep, SettingsDep, StoreDep
from api.routes.jobs import own_media
from api.schemas import COMMON_PROBLEMS, MediaPublic
from shared.media.checks import check_media
from shared.media.store import save_media
from shared.models import Media
from shared.storage import ObjectStore

router = APIRouter(prefix="/v1/media", tags=["media"], responses=COMMON_PROBLEMS)


def to_public(media: Media, store: ObjectStore) -> MediaPublic:
    return MediaPublic(
        id=media.id,
        sha256=media.sha256,
        content_type=media.content_type,
        modality=media.modality,
        size_bytes=media.size_bytes,
        created_at=media.created_at,
        url=store.presigned_url(media.object_key),
    )


@router.post("", status_code=201, response_model=MediaPublic)
def upload_media(
    response: Response,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
) -> MediaPublic:
    """Type sniffed from the bytes and bounded like a job's upload; the same bytes → the same media."""
    data = file.file.read(settings.max_upload_bytes + 1)
    checked = check_media(data, settings)
    media = save_media(
        session, store, tenant_id=tenant.id, data=data, content_type=checked.content_type, modality=checked.modality
    )
    session.commit()
    response.headers["Location"] = f"/v1/media/{media.id}"
    return to_public(media, store)


@router.get("/{media_id}", response_model=MediaPublic)
def read_media(media_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep, store: StoreDep) -> MediaPublic:
    return to_public(own_media(session, tenant, media_id), store)
