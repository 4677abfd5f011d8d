"""Robust models: ``robustify`` as a GPU job — a noise-robust copy of a served model (its vision
tower + projector distilled under the defense's noise, language model frozen), trained by a GPU
worker; progress while it trains; its checkpoint files to download when it has."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentTenant, QueueDep, SessionDep, SettingsDep, StoreDep
from api.routes.jobs import keyset_page
from api.schemas import (
    COMMON_PROBLEMS,
    RobustModelFile,
    RobustModelPage,
    RobustModelProgress,
    RobustModelPublic,
    answer,
    problems,
)
from shared import pipeline
from shared.errors import Conflict, NotFound
from shared.models import RobustModel, Tenant
from shared.quotas import Work, check_in_flight
from shared.robust_models.intake import check_robustify
from shared.robust_models.spec import RobustifySpec
from shared.robust_models.store import cancel_robust_model, create_robust_model, spec_of

router = APIRouter(prefix="/v1/robust-models", tags=["robust models"], responses=COMMON_PROBLEMS)
POLL_S = 10  # Retry-After of a robustify run not finished yet (training takes minutes)


def to_public(row: RobustModel) -> RobustModelPublic:
    spec = spec_of(row)
    base = f"/v1/robust-models/{row.id}"
    files = [
        RobustModelFile(name=name, bytes=f["bytes"], sha256=f["sha256"], link=f"{base}/files/{name}")
        for name, f in sorted((row.files or {}).items())
    ]
    progress = RobustModelProgress(
        steps=row.steps_done,
        max_steps=spec.steps,
        minutes_cap=spec.minutes,
        loss=row.loss,
        fraction=min(1.0, row.steps_done / spec.steps) if spec.steps else None,
    )
    return RobustModelPublic(
        id=row.id,
        status=row.status,  # type: ignore[arg-type]
        source_model=row.source_model,
        spec=spec,
        attempt=row.attempt,
        progress=progress,
        record=row.record,
        files=files,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        links={"self": base, "cancel": f"{base}/cancel"},
    )


def own(session: Session, tenant: Tenant, model_id: uuid.UUID) -> RobustModel:
    row = session.get(RobustModel, model_id)
    if row is None or row.tenant_id != tenant.id:
        raise NotFound(f"no robust model {model_id}")
    return row


@router.post(
    "",
    status_code=202,
    response_model=RobustModelPublic,
    responses={202: answer("queued", "Location", "Retry-After")}
    | problems(_422="invalid spec, unknown or unsupported model, budget over the cap, unknown archive"),
)
def submit_robust_model(
    response: Response,
    spec: RobustifySpec,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    queue: QueueDep,
) -> RobustModelPublic:
    """Queue a robustify run on a GPU worker. Progress: ``GET /v1/robust-models/{id}``."""
    check_in_flight(session, settings, tenant, Work.ROBUST_MODELS)
    model = check_robustify(settings, session, tenant.id, spec)
    row = create_robust_model(session, tenant.id, spec, model)
    session.commit()
    queue.send(pipeline.after_robustify_submit(row))
    response.headers["Location"] = f"/v1/robust-models/{row.id}"
    response.headers["Retry-After"] = str(POLL_S)
    return to_public(row)


@router.get("", response_model=RobustModelPage)
def list_robust_models(
    tenant: CurrentTenant,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query()] = None,
) -> RobustModelPage:
    query = select(RobustModel).where(RobustModel.tenant_id == tenant.id)
    page, next_cursor = keyset_page(session, query, RobustModel, limit, cursor)
    return RobustModelPage(items=[to_public(r) for r in page], next_cursor=next_cursor)


@router.get("/{model_id}", response_model=RobustModelPublic, responses={200: answer("the run", "Retry-After")})
def read_robust_model(
    model_id: uuid.UUID, response: Response, tenant: CurrentTenant, session: SessionDep
) -> RobustModelPublic:
    """The run; while it is not finished, ``Retry-After`` says when to poll again."""
    row = own(session, tenant, model_id)
    if row.finished_at is None:
        response.headers["Retry-After"] = str(POLL_S)
    return to_public(row)


@router.post(
    "/{model_id}/cancel",
    status_code=202,
    response_model=RobustModelPublic,
    responses=problems(_409="the run already finished"),
    name="cancel_robust_model",
)
def cancel(model_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> RobustModelPublic:
    """Training stops within seconds (at its next progress write); no checkpoint is stored."""
    row = own(session, tenant, model_id)
    session.refresh(row, with_for_update=True)
    cancel_robust_model(row)
    session.commit()
    return to_public(row)


@router.get(
    "/{model_id}/files/{name}",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
        **problems(_409="the run has no checkpoint (yet)"),
    },
)
def read_robust_model_file(
    model_id: uuid.UUID, name: str, tenant: CurrentTenant, session: SessionDep, store: StoreDep
) -> Response:
    """One checkpoint file, streamed (weights can be gigabytes)."""
    row = own(session, tenant, model_id)
    if not row.files:
        raise Conflict(f"robust model {model_id} has no checkpoint ({row.status})")
    if name not in row.files:
        raise NotFound(f"robust model {model_id} has no file {name!r}; it has {', '.join(sorted(row.files))}")
    f = row.files[name]
    headers = {"Content-Length": str(f["bytes"]), "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(store.stream(f["key"]), media_type="application/octet-stream", headers=headers)
