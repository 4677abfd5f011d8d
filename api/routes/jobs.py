"""Defense jobs: submit (multipart or JSON), list, read, samples, cancel, webhook deliveries."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api.deps import CurrentTenant, IdempotencyKeyHeader, QueueDep, SessionDep, SettingsDep, StoreDep
from api.schemas import (
    COMMON_PROBLEMS,
    DeliveryPublic,
    JobCreate,
    JobOptions,
    JobPage,
    JobPublic,
    JobStatus,
    answer,
    problems,
)
from shared import pipeline
from shared.config import Settings
from shared.errors import Invalid, NotFound
from shared.jobs.dispatch import commit_and_dispatch
from shared.jobs.intake import check_modality, check_options, replay, request_hash
from shared.jobs.store import cancel, config_of, create_job, result_of, samples_of
from shared.media.checks import check_media
from shared.media.store import save_media
from shared.models import Delivery, Job, Media, Tenant
from shared.observability import events
from shared.quotas import Work, check_in_flight
from shared.smoothing.types import Sample, SmoothConfig, noise_space_for
from shared.storage import ObjectStore
from shared.webhooks.endpoints import check_callback, check_redelivery
from shared.webhooks.schedule import schedule_webhook

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=COMMON_PROBLEMS)
POLL_S = 1  # Retry-After of a job not finished yet


def outcome_fields(job: Job) -> dict[str, Any]:
    """The result's fields of ``JobPublic`` (none before the job finished)."""
    r = result_of(job)
    if r is None:
        return {}
    return {
        "answer": r.answer,
        "abstained": r.abstained,
        "consensus": r.consensus,
        "stop_reason": r.stop_reason,
        "samples_spent": r.samples_spent,
        "timings": r.timings,
        "refusal": r.refusal,
    }


def to_public(job: Job, store: ObjectStore, media: Media | None = None) -> JobPublic:
    links = {
        "self": f"/v1/jobs/{job.id}",
        "samples": f"/v1/jobs/{job.id}/samples",
        "deliveries": f"/v1/jobs/{job.id}/deliveries",
    }
    if media is not None:
        links["media"] = store.presigned_url(media.object_key)
    return JobPublic(
        id=job.id,
        status=job.status,
        model=job.model,
        prompt=job.prompt,
        params=config_of(job),
        media_id=job.media_id,
        callback_url=job.callback_url,
        idempotency_key=job.idempotency_key,
        rounds_done=job.rounds_done,
        **outcome_fields(job),
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        generated_at=job.generated_at,
        generated_on=job.generated_on,
        aggregated_at=job.aggregated_at,
        finished_at=job.finished_at,
        links=links,
    )


def own_job(session: Session, tenant: Tenant, job_id: uuid.UUID) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.tenant_id != tenant.id:  # another tenant's id is indistinguishable from none
        raise NotFound(f"no job {job_id}")
    return job


def own_media(session: Session, tenant: Tenant, media_id: uuid.UUID) -> Media:
    media = session.get(Media, media_id)
    if media is None or media.tenant_id != tenant.id:
        raise NotFound(f"no media {media_id}")
    return media


def validated(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from exc


class JobInput(BaseModel):
    options: JobOptions
    data: bytes | None = None
    media_id: uuid.UUID | None = None


async def job_input(request: Request, settings: SettingsDep) -> JobInput:
    """The body: multipart (``file`` + option fields) or JSON (``media_id`` + options)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
            raise HTTPException(422, "the body is not valid JSON (or is nested too deeply)") from exc
        create = validated(JobCreate, body)
        return JobInput(options=create, media_id=create.media_id)
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "file: a multipart file field is required")
        fields = {k: (vs if len(vs := form.getlist(k)) > 1 else vs[0]) for k in form if k != "file"}
        return JobInput(options=validated(JobOptions, fields), data=await upload.read(settings.max_upload_bytes + 1))
    raise HTTPException(415, "send multipart/form-data (file + fields) or application/json (media_id + fields)")


def defense_config(opts: JobOptions, modality: str) -> SmoothConfig:
    """The core's config; the combinations the core rejects (``ValueError``) are invalid input."""
    try:
        return opts.config(noise_space_for(modality, opts.noise_space))
    except ValueError as exc:
        raise Invalid(str(exc)) from exc


def submit(
    session: Session, store: ObjectStore, s: Settings, tenant: Tenant, body: JobInput, key: str | None
) -> tuple[Job, Media, bool]:
    """Validate everything, then store: the job and its media (new: True) or, for a repeated
    Idempotency-Key with the same body, the job it made (False)."""
    opts = body.options
    model = check_options(s, model=opts.model, num_samples=opts.num_samples, max_new_tokens=opts.max_new_tokens)
    if body.data is not None:
        checked = check_media(body.data, s)
        modality, sha = checked.modality, ObjectStore.sha256(body.data)
    else:
        assert body.media_id is not None
        media = own_media(session, tenant, body.media_id)
        modality, sha = media.modality, media.sha256
    config = defense_config(opts, modality)
    check_modality(model, modality)
    check_callback(session, tenant.id, opts.callback_url)
    digest = request_hash(
        media_sha256=sha, prompt=opts.prompt, model=model, config=config, callback_url=opts.callback_url
    )
    if (earlier := replay(session, tenant.id, key, digest, s.idempotency_key_ttl_s)) is not None:
        return earlier, own_media(session, tenant, earlier.media_id), False  # a retry is answered even at the quota
    check_in_flight(session, s, tenant, Work.JOBS)
    if body.data is not None:
        media = save_media(
            session, store, tenant_id=tenant.id, data=body.data, content_type=checked.content_type, modality=modality
        )
    job = create_job(
        session,
        media=media,
        prompt=opts.prompt,
        model=model,
        config=config,
        request_hash=digest,
        idempotency_key=key,
        callback_url=opts.callback_url,
    )
    return job, media, True


SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/JobForm"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
        },
    }
}


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    openapi_extra=SUBMIT_BODY,
    responses={
        202: answer("queued (or, replayed, the job this key made)", "Location", "Retry-After", "Idempotent-Replayed")
    }
    | problems(
        _409="a request with this Idempotency-Key is in progress",
        _413="the upload is over the size limit",
        _415="neither multipart nor JSON",
        _422="bad input, unknown model, or a reused Idempotency-Key",
    ),
)
def submit_job(
    response: Response,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    queue: QueueDep,
    body: Annotated[JobInput, Depends(job_input)],
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    """Queue a defense job. The same ``Idempotency-Key`` with the same body returns the same job
    (``Idempotent-Replayed: true``); with another body → 422; while the first request with that key
    is still being processed → 409. Bad input stores nothing."""
    job, media, created = submit(session, store, settings, tenant, body, idempotency_key)
    # the job is the outbox: committed, then dispatched now if its tenant has a free slot, else later
    commit_and_dispatch(session, settings, queue, tenant.id)
    if created:
        events.job_submitted(job)
    else:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    response.headers["Retry-After"] = str(POLL_S)
    return to_public(job, store, media)


def encode_cursor(job: Job) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at.isoformat()}|{job.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except ValueError as exc:
        raise HTTPException(422, "cursor: not a cursor this API returned") from exc


@router.get("", response_model=JobPage)
def list_jobs(
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    status: Annotated[JobStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> JobPage:
    """The tenant's jobs, newest first, ``limit`` at a time; ``next_cursor`` fetches the next page."""
    query = select(Job).where(Job.tenant_id == tenant.id)
    if status is not None:
        query = query.where(Job.status == status)
    page, next_cursor = keyset_page(session, query, Job, limit, cursor)
    return JobPage(items=[to_public(j, store) for j in page], next_cursor=next_cursor)


def keyset_page(session: Session, query: Any, model: Any, limit: int, cursor: str | None) -> tuple[list, str | None]:
    """Newest first on ``(created_at, id)`` after ``cursor``: one page and the next page's cursor."""
    if cursor is not None:
        query = query.where(tuple_(model.created_at, model.id) < tuple_(*decode_cursor(cursor)))
    rows = session.scalars(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)).all()
    page = list(rows[:limit])
    return page, encode_cursor(page[-1]) if len(rows) > limit else None


@router.get("/{job_id}", response_model=JobPublic, responses={200: answer("the job", "Retry-After")})
def read_job(
    job_id: uuid.UUID, response: Response, tenant: CurrentTenant, session: SessionDep, store: StoreDep
) -> JobPublic:
    """The job; while it is not finished, ``Retry-After`` says when to poll again."""
    job = own_job(session, tenant, job_id)
    if job.finished_at is None:
        response.headers["Retry-After"] = str(POLL_S)
    return to_public(job, store, session.get(Media, job.media_id))


@router.get("/{job_id}/samples", response_model=list[Sample])
def list_job_samples(job_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> list[Sample]:
    """Every candidate with its provenance (the core's ``Sample``), in index order."""
    own_job(session, tenant, job_id)
    return samples_of(session, job_id)


@router.post(
    "/{job_id}/cancel", status_code=202, response_model=JobPublic, responses=problems(_409="the job already finished")
)
def cancel_job(
    job_id: uuid.UUID,
    tenant: CurrentTenant,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    queue: QueueDep,
) -> JobPublic:
    """Remaining rounds are not run; 409 if the job already finished. A job nothing ran yet ends
    now, with its webhook (or its audit item's progress)."""
    job = own_job(session, tenant, job_id)
    session.refresh(job, with_for_update=True)  # a worker's claim and the cancel don't interleave
    cancel(job)
    schedule_webhook(session, settings, job)  # ended now: its webhook event (the delivery is scheduled)
    session.commit()
    queue.send(pipeline.after_cancel(job))
    return to_public(job, store)


@router.get("/{job_id}/deliveries", response_model=list[DeliveryPublic])
def list_job_deliveries(job_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> list[Delivery]:
    """Every webhook attempt for the job, oldest first."""
    own_job(session, tenant, job_id)
    return list(session.scalars(select(Delivery).where(Delivery.job_id == job_id).order_by(Delivery.attempt)))


@router.post(
    "/{job_id}/webhook/redeliver",
    status_code=202,
    response_model=JobPublic,
    responses=problems(_409="not finished, no callback, or the endpoint is disabled"),
)
def redeliver_job_webhook(
    job_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep, store: StoreDep, queue: QueueDep
) -> JobPublic:
    """Send the job's webhook again (a new series of attempts, the same ``webhook-id``)."""
    job = own_job(session, tenant, job_id)
    check_redelivery(session, job)
    queue.send([pipeline.webhook(job)])
    return to_public(job, store)
