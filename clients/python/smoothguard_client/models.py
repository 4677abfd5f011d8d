"""What the API returns, as typed objects. Fields the server adds later are kept (``extra="allow"``),
so an older client keeps working against a newer server."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

JOB_FINISHED = frozenset({"succeeded", "abstained", "failed", "cancelled"})
AUDIT_FINISHED = frozenset({"succeeded", "failed", "cancelled"})
DATASET_CHECKED = frozenset({"ready", "invalid"})


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Media(ApiModel):
    id: UUID
    sha256: str
    content_type: str
    modality: str
    size_bytes: int
    created_at: datetime
    url: str = Field(description="presigned download link (it expires)")


class Sample(ApiModel):
    """One candidate answer of a job, with its provenance and its place in the vote."""

    index: int
    round: int
    seed: int | None = None
    sigma: float
    noise_space: str
    is_clean: bool
    text: str
    num_tokens: int
    generation_ms: float
    cluster: int | None = None
    cosine_to_centroid: float | None = None
    selected: bool = False
    answer_label: str | None = None


class Job(ApiModel):
    id: UUID
    status: str = Field(description="queued | running | succeeded | abstained | failed | cancelled")
    model: str
    prompt: str
    params: dict[str, Any]
    media_id: UUID
    callback_url: str | None = None
    idempotency_key: str | None = None
    answer: str | None = None
    abstained: bool | None = None
    consensus: dict[str, Any] | None = None
    stop_reason: str | None = None
    samples_spent: int | None = None
    rounds_done: int = 0
    timings: dict[str, Any] | None = None
    refusal: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str] = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None or self.status in JOB_FINISHED


class AuditProgress(ApiModel):
    done: int = Field(description="items finished")
    total: int
    attacked: int = 0
    jobs_done: int = 0
    jobs_total: int = 0
    fraction: float = Field(0.0, description="attacks + defense jobs done, of all of them")
    eta_s: float | None = None


class Audit(ApiModel):
    id: UUID
    status: str = Field(description="queued | running | reporting | succeeded | failed | cancelled")
    model: str
    spec: dict[str, Any]
    callback_url: str | None = None
    progress: AuditProgress
    summary: dict[str, Any] | None = Field(None, description="the report's headline numbers, when succeeded")
    universal: dict[str, Any] | None = None
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str] = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in AUDIT_FINISHED


class Dataset(ApiModel):
    id: UUID
    sha256: str = Field(description="name it as dataset.archive (with this format) in an audit")
    format: str
    status: str = Field(description="validating | ready | invalid")
    items: int | None = None
    size_bytes: int
    error: str | None = None
    created_at: datetime
    checked_at: datetime | None = None
    links: dict[str, str] = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in DATASET_CHECKED


class WebhookEndpoint(ApiModel):
    id: UUID
    url: str
    enabled: bool
    disabled_reason: str | None = None
    created_at: datetime
    secret: str | None = Field(None, description="whsec_… — only when created or rotated")


class WebhookEvent(ApiModel):
    id: UUID
    job_id: UUID | None = None
    audit_id: UUID | None = None
    state: str = Field(description="pending | delivered | exhausted | failed | skipped")
    attempts: int
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime | None = None


class Delivery(ApiModel):
    id: UUID
    endpoint_id: UUID
    message_id: str
    attempt: int
    attempted_at: datetime
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    job_id: UUID | None = None
    audit_id: UUID | None = None


T = TypeVar("T")


class Page(ApiModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(None, description="pass as cursor= for the next page; None on the last")
