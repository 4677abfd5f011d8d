"""The service's tables (SQLAlchemy 2, typed). The schema changes only through Alembic
migrations in ``migrations/``; a test checks that they and these models agree."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import func as sa_func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(server_default=sa_func.now())


def _tenant() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _created()


class ApiKey(Base):
    """Only a hash of the key is stored; ``prefix`` (its first characters) is shown to identify it."""

    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column()  # set once: the key is refused from then on
    last_used_at: Mapped[datetime | None] = mapped_column()  # refreshed at most once a minute


class Media(Base):
    """Content-addressed: the same bytes for the same tenant are one row and one object."""

    __tablename__ = "media"
    __table_args__ = (UniqueConstraint("tenant_id", "sha256"),)
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(100))  # sniffed, not the client's claim
    modality: Mapped[str] = mapped_column(String(10))  # image | audio
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    object_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = _created()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),  # the list's cursor order
        UniqueConstraint("audit_item_id", "audit_ref"),  # one defense job per item, variant and σ
        Index(  # the in-flight quota's count (shared/quotas.py)
            "ix_jobs_tenant_in_flight",
            "tenant_id",
            postgresql_where=text("finished_at IS NULL AND audit_item_id IS NULL"),
        ),
    )
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media.id"))
    status: Mapped[str] = mapped_column(String(20), index=True)  # queued|running|succeeded|abstained|failed|cancelled
    model: Mapped[str] = mapped_column(String(300))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column()
    request_hash: Mapped[str] = mapped_column(String(64))  # same Idempotency-Key, different body → 422
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    rounds_done: Mapped[int] = mapped_column(Integer, default=0)
    aggregated_rounds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # rounds voted on
    result: Mapped[dict[str, Any] | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column()
    generated_at: Mapped[datetime | None] = mapped_column()
    aggregated_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    touched_at: Mapped[datetime | None] = mapped_column(
        index=True
    )  # last message sent or task started; the sweeper's clock
    audit_item_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("audit_items.id", ondelete="CASCADE"), index=True
    )  # set on the defense jobs an audit fans out
    audit_ref: Mapped[str | None] = mapped_column(String(100))  # "<variant>@<sigma>" within the audit item
    dispatched_at: Mapped[datetime | None] = mapped_column(index=True)  # first round sent (NULL: waiting for a slot)
    claimed_by: Mapped[str | None] = mapped_column(String(120))  # the worker generating its round now
    generated_on: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON
    )  # every distinct place its rounds were generated: device, dtype, revision, versions, host


class SampleRow(Base):
    """One candidate of one round: the core's provenance fields."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("job_id", "round", "index"),)
    id: Mapped[uuid.UUID] = _id()
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    index: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    sigma: Mapped[float] = mapped_column(Float)
    noise_space: Mapped[str] = mapped_column(String(20))
    is_clean: Mapped[bool] = mapped_column(Boolean)
    text: Mapped[str] = mapped_column(Text)
    num_tokens: Mapped[int] = mapped_column(Integer)
    generation_ms: Mapped[float] = mapped_column(Float)
    cluster: Mapped[int | None] = mapped_column(Integer)
    cosine_to_centroid: Mapped[float | None] = mapped_column(Float)
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    answer_label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (UniqueConstraint("tenant_id", "url"),)
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    url: Mapped[str] = mapped_column(String(2000))
    secrets: Mapped[dict[str, Any]] = mapped_column()  # {"current": "whsec_…", "previous": "whsec_…"|null}
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()


class Delivery(Base):
    """Every webhook attempt, successful or not: of a job's event or an audit's."""

    __tablename__ = "deliveries"
    id: Mapped[uuid.UUID] = _id()
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    audit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(64))  # the webhook-id header, stable across retries
    attempt: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[datetime] = _created()
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)


class WebhookEvent(Base):
    """A finished job's or audit's webhook and its schedule: one row per event (a duplicate message
    cannot start a second), the due time of its next attempt, how it ended. Its attempts are the
    ``deliveries`` rows (numbered by ``attempts``)."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_due", "state", "next_attempt_at"),)
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    audit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), unique=True)
    state: Mapped[str] = mapped_column(String(20))  # pending|delivered|exhausted|failed|skipped
    attempts: Mapped[int] = mapped_column(Integer)  # the last attempt claimed (every series): its delivery's number
    retry: Mapped[int] = mapped_column(Integer)  # that attempt's place in its series (0: first; a redelivery restarts)
    next_attempt_at: Mapped[datetime | None] = mapped_column()  # pending: when the next attempt is due
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime | None] = mapped_column()


class Audit(Base):
    """A robustness audit: a benchmark set, attacks, a σ sweep of the defense, a judge, a report."""

    __tablename__ = "audits"
    __table_args__ = (Index("ix_audits_tenant_created", "tenant_id", "created_at", "id"),)
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    status: Mapped[str] = mapped_column(String(20), index=True)  # queued|running|reporting|succeeded|failed|cancelled
    model: Mapped[str] = mapped_column(String(300))
    spec: Mapped[dict[str, Any]] = mapped_column()  # dataset, attacks, defense, judge, limit, chunk size, concurrency
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    universal_media_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("media.id"))
    universal: Mapped[dict[str, Any] | None] = mapped_column()  # the universal image's loss and norms
    report: Mapped[dict[str, Any] | None] = mapped_column()  # object keys of the files + the summary
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    touched_at: Mapped[datetime | None] = mapped_column(index=True)  # the sweeper's clock, as for jobs
    claimed_by: Mapped[str | None] = mapped_column(String(120))  # the worker making its universal image now


class AuditItem(Base):
    """One benchmark item of an audit: its clean and adversarial images and undefended answers;
    the defended answers are the jobs that point here."""

    __tablename__ = "audit_items"
    __table_args__ = (UniqueConstraint("audit_id", "index"),)
    id: Mapped[uuid.UUID] = _id()
    audit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    chunk: Mapped[int] = mapped_column(Integer)  # items are attacked a chunk at a time, batched
    key: Mapped[str] = mapped_column(String(200))  # the item's id in its dataset
    category: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # yes_no | closed | open | safety
    prompt: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)  # what targeted attacks try to make the model say
    media_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("media.id"))
    outputs: Mapped[dict[str, Any] | None] = mapped_column()  # per variant: media id, undefended answer, attack stats
    verdicts: Mapped[dict[str, Any] | None] = mapped_column()  # per "<variant>@<sigma>": the judge's verdict
    dispatched_at: Mapped[datetime | None] = mapped_column()
    attacked_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    claimed_by: Mapped[str | None] = mapped_column(String(120))  # the worker attacking its chunk now


class RobustModel(Base):
    """A robustify run: a tenant's noise-robust copy of a served model, trained by a GPU worker;
    its checkpoint's files in the object store, its training record here."""

    __tablename__ = "robust_models"
    __table_args__ = (Index("ix_robust_models_tenant_created", "tenant_id", "created_at", "id"),)
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    status: Mapped[str] = mapped_column(String(20), index=True)  # queued|training|succeeded|failed|cancelled
    source_model: Mapped[str] = mapped_column(String(300))
    spec: Mapped[dict[str, Any]] = mapped_column()  # RobustifySpec
    attempt: Mapped[int] = mapped_column(
        Integer, default=0
    )  # the attempt that may write (a redelivery makes a new one)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float | None] = mapped_column(Float)  # the mean loss of the last progress interval
    record: Mapped[dict[str, Any] | None] = mapped_column()  # the training record (σ schedule, steps, validation)
    files: Mapped[dict[str, Any] | None] = mapped_column()  # checkpoint file name → object key, bytes, sha256
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    touched_at: Mapped[datetime | None] = mapped_column(index=True)  # the sweeper's clock; training touches it
    claimed_by: Mapped[str | None] = mapped_column(String(120))  # the worker training it now


class Worker(Base):
    """A live worker process: it writes ``seen_at`` every few seconds. Work claimed by a worker
    silent for ``worker_timeout_s`` is re-sent by the sweeper (it died mid-step)."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid:nonce, new for every process
    queues: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = _created()
    seen_at: Mapped[datetime] = mapped_column(index=True)


class DatasetArchive(Base):
    """An uploaded benchmark archive (its bytes in the object store, shared by every format it is
    uploaded as) and its check by a worker: ``validating`` → ``ready`` (with its item count) or
    ``invalid`` (with the reason). Audits read only ``ready`` ones."""

    __tablename__ = "datasets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sha256", "format"),
        Index("ix_datasets_tenant_created", "tenant_id", "created_at", "id"),
    )
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    format: Mapped[str] = mapped_column(String(40))  # pope | llava-bench | mm-safetybench
    sha256: Mapped[str] = mapped_column(String(64))  # what an audit's dataset.archive names
    object_key: Mapped[str] = mapped_column(String(300))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), index=True)  # validating|ready|invalid
    items: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # checks started (a check that kills its worker)
    created_at: Mapped[datetime] = _created()
    checked_at: Mapped[datetime | None] = mapped_column()
    touched_at: Mapped[datetime | None] = mapped_column(index=True)  # the sweeper's clock, as for jobs


class IdempotencyKey(Base):
    """The ``Idempotency-Key`` of a request that made an audit, a dataset or a webhook endpoint (jobs
    keep theirs on the job): a retry with it gets what the first made, for ``idempotency_key_ttl_s``."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "operation", "key"),)
    id: Mapped[uuid.UUID] = _id()
    tenant_id: Mapped[uuid.UUID] = _tenant()
    operation: Mapped[str] = mapped_column(String(40))  # audits | datasets | webhooks
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))  # the same key with another body → 422
    resource_id: Mapped[uuid.UUID] = mapped_column()  # what the first request made
    created_at: Mapped[datetime] = _created()
