"""Audits (a benchmark set, attacks, a σ sweep of the defense, a judge → a report) and the
benchmark archives they read."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import CurrentTenant, IdempotencyKeyHeader, QueueDep, SessionDep, SettingsDep, StoreDep
from api.routes.jobs import keyset_page
from api.schemas import (
    COMMON_PROBLEMS,
    AuditPage,
    AuditProgress,
    AuditPublic,
    DatasetPage,
    DatasetPublic,
    DeliveryPublic,
    answer,
    problems,
)
from shared import pipeline
from shared.audits.datasets import ready_archive, receive_archive
from shared.audits.spec import AuditSpec, DatasetFormat
from shared.audits.store import CONTENT_TYPES, create_audit, progress
from shared.audits.store import cancel_audit as stop_audit
from shared.errors import Conflict, Invalid, NotFound
from shared.jobs.intake import body_hash, check_modality, check_options, remember, remembered
from shared.models import Audit, DatasetArchive, Delivery, Tenant
from shared.quotas import Work, check_in_flight
from shared.webhooks.endpoints import check_callback

router = APIRouter(prefix="/v1/audits", tags=["audits"], responses=COMMON_PROBLEMS)
datasets = APIRouter(prefix="/v1/datasets", tags=["audits"], responses=COMMON_PROBLEMS)
REPORT_FILES = {"json": "report.json", "csv": "items.csv", "jsonl": "items.jsonl", "html": "report.html"}
POLL_S = 5  # Retry-After of an audit (or a dataset check) not finished yet


def to_public(session: Session, audit: Audit) -> AuditPublic:
    links = {"self": f"/v1/audits/{audit.id}", "deliveries": f"/v1/audits/{audit.id}/deliveries"}
    if audit.report:
        links |= {f"report_{fmt}": f"/v1/audits/{audit.id}/report?format={fmt}" for fmt in REPORT_FILES}
    return AuditPublic(
        id=audit.id,
        status=audit.status,
        model=audit.model,
        spec=AuditSpec.model_validate(audit.spec),
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


def count_items(spec: AuditSpec, archive_items: int | None) -> int | None:
    """Items the audit will have (a generated set: its questions; an archive: its checked count)."""
    n = spec.dataset.generated_items or archive_items
    return min(n, spec.limit) if n is not None and spec.limit else (n or spec.limit)


@router.post(
    "",
    status_code=202,
    response_model=AuditPublic,
    responses={
        202: answer("queued (or, replayed, the audit this key made)", "Location", "Retry-After", "Idempotent-Replayed")
    }
    | problems(
        _409="a request with this Idempotency-Key is in progress",
        _422="invalid spec, unknown model, a model of another modality than the set's (image/audio), an archive "
        "not uploaded or not ready, too many items, a reused Idempotency-Key",
    ),
)
def submit_audit(
    response: Response,
    spec: AuditSpec,
    tenant: CurrentTenant,
    session: SessionDep,
    settings: SettingsDep,
    queue: QueueDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> AuditPublic:
    """Queue an audit. Progress: ``GET /v1/audits/{id}``; the report, JSON/CSV/HTML, when it finishes.
    The same ``Idempotency-Key`` with the same spec returns the same audit (``Idempotent-Replayed:
    true``); with another spec → 422."""
    digest = body_hash(spec.model_dump(mode="json"))
    response.headers["Retry-After"] = str(POLL_S)
    if earlier := remembered(session, tenant.id, "audits", idempotency_key, digest, settings.idempotency_key_ttl_s):
        response.headers.update({"Location": f"/v1/audits/{earlier}", "Idempotent-Replayed": "true"})
        return to_public(session, own_audit(session, tenant, earlier))
    check_in_flight(session, settings, tenant, Work.AUDITS)
    model = check_options(
        settings, model=spec.model, num_samples=spec.defense.num_samples, max_new_tokens=spec.defense.max_new_tokens
    )
    check_modality(model, spec.dataset.modality, subject=f"the {spec.dataset.format} set")
    check_callback(session, tenant.id, spec.callback_url)
    archive_items = ready_archive(session, tenant.id, spec.dataset).items if spec.dataset.archive else None
    if (n := count_items(spec, archive_items)) is not None and n > settings.max_audit_items:
        raise Invalid(f"the audit would have {n} items; the limit is {settings.max_audit_items} (set limit)")
    audit = create_audit(session, tenant.id, spec, model)
    remember(session, tenant.id, "audits", idempotency_key, digest, audit.id)
    session.commit()
    queue.send(pipeline.after_audit_submit(audit))
    response.headers["Location"] = f"/v1/audits/{audit.id}"
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


@router.get("/{audit_id}", response_model=AuditPublic, responses={200: answer("the audit", "Retry-After")})
def read_audit(audit_id: uuid.UUID, response: Response, tenant: CurrentTenant, session: SessionDep) -> AuditPublic:
    """The audit; while it is not finished, ``Retry-After`` says when to poll again."""
    audit = own_audit(session, tenant, audit_id)
    if audit.finished_at is None:
        response.headers["Retry-After"] = str(POLL_S)
    return to_public(session, audit)


@router.post(
    "/{audit_id}/cancel",
    status_code=202,
    response_model=AuditPublic,
    responses=problems(_409="the audit already finished"),
)
def cancel_audit(audit_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep, queue: QueueDep) -> AuditPublic:
    """No more chunks are attacked, the audit's unfinished defense jobs are cancelled, no report."""
    audit = own_audit(session, tenant, audit_id)
    session.refresh(audit, with_for_update=True)  # a worker's step and the cancel don't interleave
    stop_audit(session, audit)
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
def read_audit_report(
    audit_id: uuid.UUID,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    format: Literal["json", "csv", "jsonl", "html"] = "json",
) -> Response:
    audit = own_audit(session, tenant, audit_id)
    if not audit.report:
        raise Conflict(f"audit {audit_id} has no report ({audit.status})")
    name = REPORT_FILES[format]
    return Response(store.get(audit.report["files"][name]), media_type=CONTENT_TYPES[name])


@router.get("/{audit_id}/deliveries", response_model=list[DeliveryPublic])
def list_audit_deliveries(audit_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> list[Delivery]:
    own_audit(session, tenant, audit_id)
    return list(session.scalars(select(Delivery).where(Delivery.audit_id == audit_id).order_by(Delivery.attempt)))


def dataset_public(row: DatasetArchive) -> DatasetPublic:
    return DatasetPublic(
        id=row.id,
        sha256=row.sha256,
        format=row.format,
        status=row.status,  # type: ignore[arg-type]
        items=row.items,
        size_bytes=row.size_bytes,
        error=row.error,
        created_at=row.created_at,
        checked_at=row.checked_at,
        links={"self": f"/v1/datasets/{row.id}"},
    )


@datasets.post(
    "",
    status_code=202,
    response_model=DatasetPublic,
    responses={
        200: answer("these bytes were uploaded as this format before (or replayed): that dataset", "Location"),
        202: answer("stored; being checked", "Location", "Retry-After", "Idempotent-Replayed"),
    }
    | problems(
        _409="a request with this Idempotency-Key is in progress",
        _413="over the size limit",
        _422="an unknown or generated format, over the size limit, not a zip or tar, a reused Idempotency-Key",
    ),
)
def upload_dataset(
    response: Response,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    queue: QueueDep,
    file: Annotated[UploadFile, File(description="zip or tar(.gz/.bz2/.xz) of the set's folder")],
    format: Annotated[DatasetFormat, Form()],
    idempotency_key: IdempotencyKeyHeader = None,
) -> DatasetPublic:
    """Store a benchmark archive (POPE, LLaVA-Bench in-the-wild, MM-SafetyBench or audio-jsonl folder layout);
    a worker unpacks and loads it under the deployment's caps: poll ``GET /v1/datasets/{id}`` until
    it is ``ready`` (with its item count) or ``invalid`` (with the reason). The same bytes and
    format → the same dataset (200); so does a retry with the same ``Idempotency-Key`` (with
    ``Idempotent-Replayed: true``), while the key with other bytes → 422."""
    row, created = receive_archive(session, store, settings, tenant.id, format, file.file)
    digest = body_hash({"sha256": row.sha256, "format": format})
    ttl_s = settings.idempotency_key_ttl_s
    replayed = remembered(session, tenant.id, "datasets", idempotency_key, digest, ttl_s) is not None
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        remember(session, tenant.id, "datasets", idempotency_key, digest, row.id)
    session.commit()
    queue.send(pipeline.after_dataset_upload(row) if created else [])
    response.status_code = 202 if created and not replayed else 200
    response.headers["Location"] = f"/v1/datasets/{row.id}"
    if row.status == "validating":
        response.headers["Retry-After"] = str(POLL_S)
    return dataset_public(row)


@datasets.get("", response_model=DatasetPage)
def list_datasets(
    tenant: CurrentTenant,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query()] = None,
) -> DatasetPage:
    query = select(DatasetArchive).where(DatasetArchive.tenant_id == tenant.id)
    page, next_cursor = keyset_page(session, query, DatasetArchive, limit, cursor)
    return DatasetPage(items=[dataset_public(d) for d in page], next_cursor=next_cursor)


@datasets.get("/{dataset_id}", response_model=DatasetPublic, responses={200: answer("the dataset", "Retry-After")})
def read_dataset(
    dataset_id: uuid.UUID, response: Response, tenant: CurrentTenant, session: SessionDep
) -> DatasetPublic:
    """The dataset; while it is being checked, ``Retry-After`` says when to poll again."""
    row = session.get(DatasetArchive, dataset_id)
    if row is None or row.tenant_id != tenant.id:
        raise NotFound(f"no dataset {dataset_id}")
    if row.status == "validating":
        response.headers["Retry-After"] = str(POLL_S)
    return dataset_public(row)
