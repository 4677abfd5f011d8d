"""Robust models in the database: create, claim for a training attempt, progress, finish, cancel.

A run is trained by one attempt at a time: claiming increments ``attempt``, and only the attempt
that claimed last may record progress or the result, so a redelivered message (its worker died,
or the broker's visibility timeout ran out) restarts training cleanly and a superseded run stops
at its next progress write. Training is seeded, so a restarted run writes the same weights.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.errors import Conflict
from shared.jobs.store import now
from shared.liveness import claimed_by_the_dead
from shared.models import RobustModel
from shared.robust_models.spec import RobustifySpec


def spec_of(row: RobustModel) -> RobustifySpec:
    return RobustifySpec.model_validate(row.spec)


def file_key(tenant_id: str, model_id: str, name: str) -> str:
    return f"robust-models/{tenant_id}/{model_id}/{name}"


def create_robust_model(session: Session, tenant_id: uuid.UUID, spec: RobustifySpec, model: str) -> RobustModel:
    row = RobustModel(
        tenant_id=tenant_id,
        status="queued",
        source_model=model,
        spec=spec.model_dump(mode="json"),
        attempt=0,
        steps_done=0,
        cancel_requested=False,
        touched_at=now(),
    )
    session.add(row)
    session.flush()
    return row


def claim(row: RobustModel, worker: str) -> int:
    """A new training attempt by ``worker`` (the first, or a restart after a lost worker): returns its number."""
    row.attempt, row.claimed_by = row.attempt + 1, worker
    row.status, row.steps_done, row.loss = "training", 0, None
    row.started_at = row.started_at or now()
    row.touched_at = now()
    return row.attempt


def is_current(row: RobustModel | None, attempt: int) -> bool:
    """The run is unfinished and this attempt is the one that may write."""
    return row is not None and row.finished_at is None and row.attempt == attempt


def record_progress(row: RobustModel, steps: int, loss: float) -> None:
    row.steps_done, row.loss, row.touched_at = steps, loss, now()


def succeed(row: RobustModel, record: dict[str, Any], files: dict[str, Any]) -> None:
    row.status, row.record, row.files, row.finished_at = "succeeded", record, files, now()
    row.steps_done = int(record.get("steps", row.steps_done))


def fail_robust_model(session: Session, model_id: str, error: str) -> None:
    row = session.get(RobustModel, uuid.UUID(model_id), with_for_update=True)
    if row is not None and row.finished_at is None:
        row.status, row.error, row.finished_at = "failed", error[:4000], now()


def cancel_robust_model(row: RobustModel) -> None:
    """Training stops at its next progress write; nothing is stored."""
    if row.finished_at is not None:
        raise Conflict(f"robust model {row.id} already finished ({row.status})")
    row.cancel_requested = True
    row.status, row.finished_at = "cancelled", now()


def lost_robust_models(session: Session, older_than: datetime, live: set[str]) -> list[RobustModel]:
    """Unfinished runs whose worker died, or that nobody touched since ``older_than`` (training
    touches its row every few seconds), locked; claims dropped and clocks reset, so each is
    re-sent once per bound."""
    lost = or_(claimed_by_the_dead(RobustModel.claimed_by, live), RobustModel.touched_at < older_than)
    query = select(RobustModel).where(RobustModel.finished_at.is_(None), lost)
    rows = session.scalars(query.with_for_update(skip_locked=True)).all()
    for row in rows:
        row.claimed_by, row.touched_at = None, now()
    return list(rows)
