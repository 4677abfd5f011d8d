"""Request and response bodies, the response headers they come with, and the webhook payloads
(``shared.webhooks.delivery``) documented in the OpenAPI ``webhooks`` section."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.audits.spec import AuditSpec, DatasetFormat
from shared.jobs.options import SingleDefenseOptions
from shared.robust_models.spec import RobustifySpec
from shared.smoothing.types import Consensus, RefusalVote, SmoothConfig, Timings

JobStatus = Literal["queued", "running", "succeeded", "abstained", "failed", "cancelled"]
AuditStatus = Literal["queued", "running", "reporting", "succeeded", "failed", "cancelled"]


class ProblemError(BaseModel):
    location: str = Field(description="where, dotted: query.limit, body.defense.sigmas.0")
    detail: str


class Problem(BaseModel):
    """RFC 9457 problem details: every error this API returns."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = Field(
        None, description="this occurrence: the request's path, or urn:uuid:… (a 500's id in the server's log)"
    )
    errors: list[ProblemError] | None = Field(None, description="request validation (422): each problem")


HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "the resource's URL", "schema": {"type": "string"}},
    "Retry-After": {"description": "seconds to wait before polling (or retrying)", "schema": {"type": "integer"}},
    "Idempotent-Replayed": {
        "description": "`true` when this answers an earlier request with the same Idempotency-Key",
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def answer(description: str, *headers: str) -> dict[str, Any]:
    """An OpenAPI success response with the headers it may carry."""
    return {"description": description, "headers": {name: HEADERS[name] for name in headers}}


def problems(**codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error codes, documented as ``application/problem+json``."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        int(code.lstrip("_")): {"description": why, "content": {"application/problem+json": {"schema": schema}}}
        for code, why in codes.items()
    }


COMMON_PROBLEMS = problems(
    _400="malformed body",
    _401="missing or invalid API key",
    _404="no such resource for this tenant",
    _422="invalid input (each problem in errors[])",
    _429="rate limit or quota used up (Retry-After)",
    _500="an unforeseen error (its instance is the id in the server's log)",
    _503="a backing service is unavailable (Retry-After)",
)


PRINTABLE: dict[str, Any] = {"pattern": r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"}  # no control characters


class JobOptions(SingleDefenseOptions):
    """A defense job's options: the multipart form fields, or the JSON body beside ``media_id``.
    The defense's fields, bounds and defaults (the paper's) are ``shared.jobs.options``. Limits
    that depend on the deployment (``num_samples``, ``max_new_tokens``, ``model``) are checked
    against the settings on submit."""

    prompt: str = Field(min_length=1, max_length=4000, json_schema_extra=PRINTABLE)
    model: str | None = Field(
        None, description="a known model id; default: the service's model", json_schema_extra=PRINTABLE
    )
    callback_url: str | None = Field(
        None, max_length=2000, description="a webhook endpoint registered first", json_schema_extra=PRINTABLE
    )

    @field_validator("prompt", "model", "callback_url")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        """NUL and other control characters (tab and newlines aside) are refused, not stored."""
        if value is not None and any(ord(c) < 32 and c not in "\t\n\r" or ord(c) == 127 for c in value):
            raise ValueError("must not contain control characters")
        return value


class JobForm(JobOptions):
    """``POST /v1/jobs`` as multipart: the file and the options as form fields."""

    file: bytes = Field(json_schema_extra={"format": "binary"}, description="an image or an audio file")


class JobCreate(JobOptions):
    """``POST /v1/jobs`` as JSON: media uploaded first with ``POST /v1/media``."""

    media_id: UUID


class MediaPublic(BaseModel):
    id: UUID
    sha256: str
    content_type: str
    modality: Literal["image", "audio"]
    size_bytes: int
    created_at: datetime
    url: str = Field(description="presigned download link (expires)")


class JobPublic(BaseModel):
    id: UUID
    status: JobStatus
    model: str
    prompt: str
    params: SmoothConfig = Field(description="the defense's settings (every field, defaults filled in)")
    media_id: UUID
    callback_url: str | None = None
    idempotency_key: str | None = None
    answer: str | None = None
    abstained: bool | None = None
    consensus: Consensus | None = None
    stop_reason: str | None = None
    samples_spent: int | None = None
    rounds_done: int
    timings: Timings | None = Field(None, description="generation / embedding / clustering ms")
    refusal: RefusalVote | None = Field(
        None, description="the refuse/comply vote over the noisy candidates: count, bounds, threshold, radius"
    )
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    generated_at: datetime | None = None
    aggregated_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next page; null on the last")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=10, max_length=2000, pattern=r"^https?://[^/\s]+", description="http(s) URL")

    @field_validator("url")
    @classmethod
    def _parses(cls, value: str) -> str:
        """A URL the standard library cannot split (``https://x]y``, ``http://h::``) is invalid input, not a 500."""
        try:
            parts = urlsplit(value)
            if not parts.hostname:
                raise ValueError("the URL names no host")
            _ = parts.port  # a port that is not a number raises
        except ValueError as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        return value


class WebhookPublic(BaseModel):
    id: UUID
    url: str
    enabled: bool
    disabled_reason: str | None = None
    created_at: datetime
    secret: str | None = Field(None, description="whsec_… — shown only when created or rotated")


class WebhookEventPublic(BaseModel):
    """A job's or audit's webhook and its schedule; its attempts are the job's (audit's) deliveries."""

    id: UUID
    job_id: UUID | None = None
    audit_id: UUID | None = None
    state: Literal["pending", "delivered", "exhausted", "failed", "skipped"] = Field(
        description="pending (next attempt due at next_attempt_at), delivered, exhausted (every scheduled "
        "attempt failed), failed (the receiver refused it: a 4xx, 410, or a refused/malformed URL), skipped "
        "(endpoint disabled or deleted); redeliver with POST /v1/webhooks/events/{id}/redeliver"
    )
    attempts: int = Field(description="the number of the last attempt claimed, every series counted")
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime | None = None


class DeliveryPublic(BaseModel):
    id: UUID
    endpoint_id: UUID
    message_id: str
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: float | None
    error: str | None
    job_id: UUID | None = None
    audit_id: UUID | None = None


class AuditProgress(BaseModel):
    done: int = Field(description="items finished (attacked, every defense job ended)")
    total: int
    attacked: int = Field(description="items whose attacks ran")
    jobs_done: int
    jobs_total: int
    fraction: float = Field(description="attacks + defense jobs done, of all of them")
    eta_s: float | None = Field(None, description="seconds left at the rate so far")


class AuditSummary(BaseModel):
    """The report's headline numbers (``shared.reports.summary``); its nested tables are as the
    report's JSON has them, and fields the report adds later come along."""

    model_config = ConfigDict(extra="allow")
    n_rows: int = Field(description="item × variant × σ rows")
    n_items: int
    n_eligible: int = Field(description="items answered correctly when clean: the ones ASR is counted over")
    has_safety: bool
    sigmas: list[float]
    attacks: list[str]
    groups: list[dict[str, Any]] = Field(description="per variant × σ: counts, rates, samples spent")
    headline: list[dict[str, Any]] = Field(description="per attack × σ: the headline rates, goal met or missed")
    certification: dict[str, Any]


class AuditPublic(BaseModel):
    id: UUID
    status: AuditStatus
    model: str
    spec: AuditSpec
    callback_url: str | None = None
    progress: AuditProgress
    summary: AuditSummary | None = Field(None, description="the report's headline numbers, when finished")
    universal: dict[str, Any] | None = Field(None, description="the universal image's attack stats")
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class AuditPage(BaseModel):
    items: list[AuditPublic]
    next_cursor: str | None = None


class DatasetPublic(BaseModel):
    id: UUID
    sha256: str = Field(description="the archive's sha256: name it as dataset.archive (with this format) in an audit")
    format: DatasetFormat
    status: Literal["validating", "ready", "invalid"] = Field(description="audits accept ready datasets only")
    items: int | None = Field(None, description="the set's items, once ready")
    size_bytes: int
    error: str | None = Field(None, description="why it is invalid")
    created_at: datetime
    checked_at: datetime | None = None
    links: dict[str, str]


class DatasetPage(BaseModel):
    items: list[DatasetPublic]
    next_cursor: str | None = None


class RobustModelProgress(BaseModel):
    steps: int = Field(description="training steps done (this attempt)")
    max_steps: int | None = Field(None, description="the step cap, when one was set")
    minutes_cap: float
    loss: float | None = Field(None, description="mean feature MSE of the last progress interval")
    fraction: float | None = Field(None, description="steps / max_steps, when a step cap was set")


class RobustModelFile(BaseModel):
    name: str
    bytes: int
    sha256: str
    link: str = Field(description="GET it (Bearer auth) to download the file")


class RobustModelPublic(BaseModel):
    id: UUID
    status: Literal["queued", "training", "succeeded", "failed", "cancelled"]
    source_model: str
    spec: RobustifySpec
    attempt: int = Field(description="training attempts (a run restarts from its seed when a worker was lost)")
    progress: RobustModelProgress
    record: dict[str, Any] | None = Field(
        None, description="the training record: σ schedule, steps, loss curve, validation accuracy under noise"
    )
    files: list[RobustModelFile] = Field(default_factory=list, description="the checkpoint, when succeeded")
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]


class RobustModelPage(BaseModel):
    items: list[RobustModelPublic]
    next_cursor: str | None = None


class JobCompletedData(BaseModel):
    job_id: UUID
    status: JobStatus
    answer: str | None
    abstained: bool | None
    url: str = Field(description="GET it (Bearer auth) for the whole job")


class JobCompleted(BaseModel):
    """Sent to the job's ``callback_url`` when it ends (Standard Webhooks: ``webhook-id``,
    ``webhook-timestamp``, ``webhook-signature`` headers, signed with the endpoint's ``whsec_`` secret)."""

    type: Literal["job.completed"]
    timestamp: datetime
    data: JobCompletedData


class AuditCompletedData(BaseModel):
    audit_id: UUID
    status: AuditStatus
    done: int
    total: int
    url: str = Field(description="GET it (Bearer auth) for the whole audit")
    report: str | None = Field(description="the HTML report's URL, when there is one")


class AuditCompleted(BaseModel):
    """Sent to the audit's ``callback_url`` when it ends (signed like ``job.completed``)."""

    type: Literal["audit.completed"]
    timestamp: datetime
    data: AuditCompletedData
