"""Defense jobs: submit (multipart), read, list samples."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Response, UploadFile

from api.deps import CurrentTenant, SessionDep, SettingsDep, StoreDep
from api.schemas import JobPublic
from shared.intake import check_media, noise_space_for
from shared.jobs import cancel, create_job, samples_of, save_media
from shared.models import Job
from shared.smoothing.types import Sample, SmoothConfig

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def to_public(job: Job) -> JobPublic:
    r = job.result or {}
    links = {"self": f"/v1/jobs/{job.id}", "samples": f"/v1/jobs/{job.id}/samples"}
    return JobPublic(id=job.id, status=job.status, model=job.model, prompt=job.prompt, params=job.params,
                     answer=r.get("answer"), abstained=r.get("abstained"), consensus=r.get("consensus"),
                     samples_spent=r.get("samples_spent"), rounds_done=job.rounds_done, error=job.error,
                     created_at=job.created_at, started_at=job.started_at, generated_at=job.generated_at,
                     finished_at=job.finished_at, links=links)  # fmt: skip


def own_job(session, tenant, job_id: uuid.UUID) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.tenant_id != tenant.id:  # another tenant's id is indistinguishable from none
        raise HTTPException(404, f"no job {job_id}")
    return job


@router.post("", status_code=202, response_model=JobPublic)
def submit_job(
    response: Response, tenant: CurrentTenant, session: SessionDep, store: StoreDep, settings: SettingsDep,
    file: Annotated[UploadFile, File()], prompt: Annotated[str, Form(min_length=1, max_length=4000)],
    sigma: Annotated[float, Form(ge=0, le=10)] = 0.1,
    num_samples: Annotated[int, Form(ge=1)] = 10,
    noise_space: Annotated[str | None, Form()] = None,
    clustering: Annotated[str, Form()] = "kmeans",
    adaptive: Annotated[bool, Form()] = False,
    alpha: Annotated[float, Form()] = 0.05,
    seed: Annotated[int, Form(ge=0)] = 0,
    max_new_tokens: Annotated[int, Form(ge=1)] = 128,
) -> JobPublic:  # fmt: skip
    data = file.file.read(settings.max_upload_bytes + 1)
    try:
        media_info = check_media(data, settings)
        if num_samples > settings.max_num_samples or max_new_tokens > settings.max_new_tokens:
            raise ValueError(f"num_samples ≤ {settings.max_num_samples} and max_new_tokens ≤ {settings.max_new_tokens}")
        space = noise_space_for(media_info.modality, noise_space)
        config = SmoothConfig(sigma=sigma, num_samples=num_samples, noise_space=space,  # type: ignore[arg-type]
                              clustering=clustering, adaptive=adaptive, alpha=alpha, seed=seed,  # type: ignore[arg-type]
                              max_new_tokens=max_new_tokens)  # fmt: skip
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    media = save_media(session, store, tenant_id=tenant.id, data=data, content_type=media_info.content_type,
                       modality=media_info.modality)  # fmt: skip
    job = create_job(session, media=media, prompt=prompt, model=settings.model, config=config)
    session.commit()  # the row exists before the message is sent
    from workers.celery_app import app as celery_app

    celery_app.send_task("gpu.sample_round", args=[str(job.id), 0], queue="gpu")
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    response.headers["Retry-After"] = "1"
    return to_public(job)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobPublic)
def cancel_job(job_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> JobPublic:
    """Remaining rounds are not run; 409 if the job already finished."""
    job = own_job(session, tenant, job_id)
    try:
        cancel(job)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from exc
    return to_public(job)


@router.get("/{job_id}", response_model=JobPublic)
def read_job(job_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> JobPublic:
    return to_public(own_job(session, tenant, job_id))


@router.get("/{job_id}/samples", response_model=list[Sample])
def read_samples(job_id: uuid.UUID, tenant: CurrentTenant, session: SessionDep) -> list[Sample]:
    """Every candidate with its provenance (the core's ``Sample``), in index order."""
    own_job(session, tenant, job_id)
    return samples_of(session, job_id)
