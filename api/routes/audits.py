"""Audits (a benchmark set, attacks, a σ sweep of the defense, a judge → a report) and the
benchmark archives they read."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentTenant, QueueDep, SessionDep, SettingsDep, StoreDep
from api.routes.jobs import keyset_page
from api.schemas import COMMON_PROBLEMS, AuditPage, AuditProgress, AuditPublic, DatasetPublic, DeliveryPublic, problems
from shared import pipeline
from shared.audits.datasets import check_archive, dataset_key
from shared.audits.spec import AuditSpec, DatasetFormat
from shared.audits.store import CONTENT_TYPES, cancel_audit, create_audit, progress
from shared.errors import Conflict, Invalid, NotFound
from shared.jobs.intake import check_options
from shared.models import Audit, Delivery, Tenant
from shared.storage import ObjectStore
from shared.webhooks.endpoints import check_callback

router = APIRouter(prefix="/v1/audits", tags=["audits"], responses=COMMON_PROBLEMS)
datasets = APIRouter(prefix="/v1/datasets", tags=["audits"], responses=COMMON_PROBLEMS)
REPORT_FILES = {"json": "report.json", "csv": "items.csv", "html": "report.html"}


def to_public(session: Session, audit: Audit) -> AuditPublic:
    links = {"self": f"/v1/audits/{audit.id}", "deliveries": f"/v1/audits/{audit.id}/deliveries"}
    if audit.report:
        links |= {f"report_{fmt}": f"/v1/audits/{audit.id}/report?format={fmt}" for fmt in REPORT_FILES}
    return AuditPublic(
        id=audit.id,
        status=audit.status,
        model=audit.model,
        spec=audit.spec,  # type: ignore[arg-type]
        callback_url=audit.callback_url,
        progress=AuditProgress(**progress(session, audit)),
        summary=(audit.report or {}).get("summary"),
        universal=audit.universal,
        error=audit.error,
        created_at=audit.created_at,
        started_at=audit.started_at,
        finished_at=audit.finished_at,
        links=links,
    )


def own_audit(session: Session, tenant: Tenant, audit_id: uuid.UUID) -> Audit:
    audit = session.get(Audit, audit_id)
    if audit is None or audit.tenant_id != tenant.id:
        raise NotFound(f"no audit {audit_id}")
    return audit


def count_items(spec: AuditSpec) -> int | None:
    """Items the audit will have, where known before loading (the synthetic set: two per image)."""
    n = 2 * spec.dataset.count if spec.dataset.format == "shapes" else None
    return min(n, spec.limit) if n is not None and spec.limit else (n or spec.limit)


@router.post(
    "",
    status_code=202,
    response_model=AuditPublic,
    responses=problems(_422="invalid spec, unknown model, unknown archive, too many items"),
)
def submit_audit(
    response: Response,
    spec: AuditSpec,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    queue: QueueDep,
) -> AuditPublic:
    """Queue an audit. Progress: ``GET /v1/audits/{id}``; the report, JSON/CSV/HTML, when it finishes."""
    model = check_options(
        settings, model=spec.model, num_samples=spec.defense.num_samples, max_new_tokens=spec.defense.max_new_tokens
    )
    check_callback(session, tenant.id, spec.callback_url)
    if (n := count_items(spec)) is not None and n > settings.max_audit_items:
        raise Invalid(f"the audit would have {n} items; the limit is {settings.max_audit_items} (set limit)")
    if spec.dataset.archive and not store.exists(dataset_key(str(tenant.id), spec.dataset.archive)):
        raise Invalid(f"dataset.archive: no archive {spec.dataset.archive}; upload it with POST /v1/datasets")
    audit = create_audit(session, tenant.id, spec, model)
    session.commit()
    queue.send(pipeline.after_audit_submit(audit))
    response.headers["Location"] = f"/v1/audits/{audit.id}"
    response.headers["Retry-After"] = "5"
    return to_public(session, audit)


@router.get("", response_model=AuditPage)
def list_audits(
    tenant: CurrentTenant,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query()] = None,
) -> AuditPage:
    page, next_cursor = keyset_page(session, select(Audit).where(Audit.tenant_id == tenant.id), Audit, limit, cursor)
    return AuditPage(items=[to_public(session, a) for a in page], next_cursor=next_cursor)


@router.get("/{audit_id}", response_model=AuditPublic)
def read_audit(audit_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> AuditPublic:
    return to_public(session, own_audit(session, tenant, audit_id))


@router.post(
    "/{audit_id}/cancel",
    status_code=202,
    response_model=AuditPublic,
    responses=problems(_409="the audit already finished"),
)
def cancel(audit_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep, queue: QueueDep) -> AuditPublic:
    """No more chunks are attacked, the audit's unfinished defense jobs are cancelled, no report."""
    audit = own_audit(session, tenant, audit_id)
    session.refresh(audit, with_for_update=True)  # a worker's step and the cancel don't interleave
    cancel_audit(session, audit)
    session.commit()
    queue.send(pipeline.after_audit_cancel(audit))
    return to_public(session, audit)


@router.get(
    "/{audit_id}/report",
    responses={
        200: {"content": {t: {} for t in CONTENT_TYPES.values()}, "description": "the report file"},
        **problems(_409="the audit has no report (yet)"),
    },
)
def read_report(
    audit_id: uuid.UUID,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    format: Literal["json", "csv", "html"] = "json",
) -> Response:
    audit = own_audit(session, tenant, audit_id)
    if not audit.report:
        raise Conflict(f"audit {audit_id} has no report ({audit.status})")
    name = REPORT_FILES[format]
    return Response(store.get(audit.report["files"][name]), media_type=CONTENT_TYPES[name])


@router.get("/{audit_id}/deliveries", response_model=list[DeliveryPublic])
def read_deliveries(audit_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> list[Delivery]:
    own_audit(session, tenant, audit_id)
    return list(session.scalars(select(Delivery).where(Delivery.audit_id == audit_id).order_by(Delivery.attempt)))


@datasets.post(
    "", status_code=201, response_model=DatasetPublic, responses=problems(_422="not an archive of that format")
)
def upload_dataset(
    tenant: CurrentTenant,
    store: StoreDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="zip or tar(.gz) of the set's folder")],
    format: Annotated[DatasetFormat, Form()],
) -> DatasetPublic:
    """Store a benchmark archive (POPE, LLaVA-Bench in-the-wild or MM-SafetyBench folder layout),
    checked by loading it; the same bytes → the same id."""
    data = file.file.read(settings.max_dataset_bytes + 1)
    n = check_archive(format, data, settings.max_dataset_bytes)
    sha = ObjectStore.sha256(data)
    store.put(dataset_key(str(tenant.id), sha), data, "application/octet-stream")
    return DatasetPublic(id=sha, format=format, items=n, size_bytes=len(data))
