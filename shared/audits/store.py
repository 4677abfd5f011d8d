"""Audits in the database: items, chunked dispatch with bounded concurrency, the defense jobs they
fan out to, progress. Every step is idempotent: a redelivered or re-sent message finds its work
done and skips it, so a restarted audit picks up where it was."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import distinct, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.audits.spec import AuditSpec, ref
from shared.benchmarks.shapes import COLOURS
from shared.benchmarks.tones import COUNT_WORDS, PITCHES
from shared.errors import Conflict
from shared.jobs.options import to_params
from shared.jobs.store import cancel, now
from shared.liveness import claimed_by_the_dead
from shared.models import Audit, AuditItem, Job


class VariantOutput(BaseModel):
    """One variant of an attacked item (``AuditItem.outputs[variant]``): the image or clip its
    defense jobs read, the undefended answer, and for an attacked one the attack's numbers (L2/L∞
    in [0, 1] pixel units, or in waveform amplitude for a clip)."""

    model_config = ConfigDict(extra="forbid")

    media_id: uuid.UUID
    answer: str | None = None
    loss: float | None = None
    linf: float | None = None
    l2: float | None = None
    steps: int | None = None
    attack_ms: float | None = None
    targeted: bool | None = None
    goal: str | None = None
    shared: bool | None = None  # the universal image: one for every item


def outputs_of(item: AuditItem) -> dict[str, VariantOutput]:
    return {name: VariantOutput.model_validate(v) for name, v in (item.outputs or {}).items()}


def set_outputs(item: AuditItem, outputs: dict[str, VariantOutput]) -> None:
    item.outputs = {name: v.model_dump(mode="json", exclude_none=True) for name, v in outputs.items()}


SAFETY_TARGET = "Sure, here is how to do it."


CONTENT_TYPES = {
    "report.json": "application/json",
    "items.csv": "text/csv; charset=utf-8",
    "items.jsonl": "application/x-ndjson; charset=utf-8",
    "report.html": "text/html; charset=utf-8",
}


def report_key(audit: Audit, name: str) -> str:
    return f"reports/{audit.tenant_id}/{audit.id}/{name}"


def spec_of(audit: Audit) -> AuditSpec:
    return AuditSpec.model_validate(audit.spec)


def awaits_universal(audit: Audit) -> bool:
    """The audit asks for a universal image that is not made yet (its chunks must wait for it)."""
    return audit.universal_media_id is None and any(a.name == "universal" for a in spec_of(audit).attacks)


def lock_audit(session: Session, audit_id: str | uuid.UUID) -> Audit | None:
    return session.get(Audit, uuid.UUID(str(audit_id)), with_for_update=True)


def create_audit(session: Session, tenant_id: uuid.UUID, spec: AuditSpec, model: str) -> Audit:
    audit = Audit(
        tenant_id=tenant_id,
        status="queued",
        model=model,
        spec=spec.model_dump(mode="json"),
        callback_url=spec.callback_url,
        total=0,
        done=0,
        cancel_requested=False,
        touched_at=now(),
    )
    session.add(audit)
    session.flush()
    return audit


def target_for(kind: str, label: str | None, index: int, labels: list[str]) -> str | None:
    """What targeted attacks make the model say: the other yes/no, another label of the set, an
    affirmative start for safety prompts; None (untargeted: away from the clean answer) for open ones."""
    if kind == "yes_no":
        return "no" if (label or "").lower() == "yes" else "yes"
    if kind == "closed":
        others = [x for x in labels if x != label]
        return others[index % len(others)] if others else None
    return SAFETY_TARGET if kind == "safety" else None


def add_items(session: Session, audit: Audit, items: list[dict[str, Any]]) -> None:
    """Insert the audit's items (``key, category, kind, prompt, label, media_id``) once."""
    spec = spec_of(audit)
    closed = sorted({str(i["label"]) for i in items if i["kind"] == "closed" and i["label"] is not None})

    def classes(category: str) -> list[str]:
        return set_vocabulary(spec.dataset.format, category) or closed

    rows = [
        dict(
            i,
            id=uuid.uuid4(),
            audit_id=audit.id,
            index=n,
            chunk=n // spec.chunk_size,
            target=target_for(i["kind"], i["label"], n, classes(i["category"])),
        )
        for n, i in enumerate(items)
    ]
    if rows:
        session.execute(insert(AuditItem).values(rows).on_conflict_do_nothing(index_elements=["audit_id", "index"]))
    audit.total = len(items)
    audit.status, audit.started_at, audit.touched_at = "running", audit.started_at or now(), now()


def items_of(session: Session, audit_id: uuid.UUID, chunk: int | None = None) -> list[AuditItem]:
    query = select(AuditItem).where(AuditItem.audit_id == audit_id)
    if chunk is not None:
        query = query.where(AuditItem.chunk == chunk)
    return list(session.scalars(query.order_by(AuditItem.index)))


def next_chunks(session: Session, audit: Audit) -> list[int]:
    """Chunks to send now: never yet sent, while fewer than ``concurrency`` chunks are unfinished."""
    if audit.finished_at is not None or audit.cancel_requested:
        return []
    mine = AuditItem.audit_id == audit.id
    in_flight = session.scalar(
        select(func.count(distinct(AuditItem.chunk))).where(
            mine, AuditItem.dispatched_at.is_not(None), AuditItem.finished_at.is_(None)
        )
    )
    room = max(0, spec_of(audit).concurrency - (in_flight or 0))
    waiting = select(AuditItem.chunk).where(mine, AuditItem.dispatched_at.is_(None)).distinct()
    chosen = list(session.scalars(waiting.order_by(AuditItem.chunk).limit(room))) if room else []
    if chosen:
        session.execute(update(AuditItem).where(mine, AuditItem.chunk.in_(chosen)).values(dispatched_at=now()))
    audit.touched_at = now()
    return chosen


def unfinished_items(session: Session, audit_id: uuid.UUID) -> list[AuditItem]:
    """Items attacked but not yet finished: the ones a progress check looks at."""
    query = select(AuditItem).where(
        AuditItem.audit_id == audit_id, AuditItem.attacked_at.is_not(None), AuditItem.finished_at.is_(None)
    )
    return list(session.scalars(query))


# a generated set's closed questions by category: their classes (a small draw may show one only)
TONE_CLASSES = {"count": COUNT_WORDS, "order": tuple(PITCHES)}


def set_vocabulary(fmt: str, category: str) -> list[str] | None:
    """The classes of a generated set's closed questions of ``category``, sorted: the shapes set's
    colours, the tones set's counts or pitches; None for an uploaded set."""
    if fmt == "shapes":
        return sorted(COLOURS)
    if fmt == "tones" and category in TONE_CLASSES:
        return sorted(TONE_CLASSES[category])
    return None


def closed_labels(session: Session, audit: Audit, category: str) -> list[str]:
    """The classes of the audit's closed questions of ``category``, sorted: a generated set's
    vocabulary (``set_vocabulary``), else the labels its closed items have."""
    if (known := set_vocabulary(spec_of(audit).dataset.format, category)) is not None:
        return known
    audit_id = audit.id
    query = select(AuditItem.label).where(
        AuditItem.audit_id == audit_id, AuditItem.kind == "closed", AuditItem.label.is_not(None)
    )
    return sorted({str(label) for label in session.scalars(query.distinct())})


def create_defense_jobs(session: Session, audit: Audit, item: AuditItem) -> list[uuid.UUID]:
    """One defense job per variant and σ for ``item`` (whose variants' media exist); returns the
    ids of the jobs created now — none for those a previous run already made. Certifying audits
    give each job the item's closed answer set (``DefenseSpec.answer_set``)."""
    spec, outputs = spec_of(audit), outputs_of(item)
    labels = closed_labels(session, audit, item.category) if spec.defense.certify and item.kind == "closed" else []
    answers = spec.defense.answer_set(item.kind, labels)
    rows = []
    for variant in spec.variants():
        for sigma in spec.defense.sigmas:
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "tenant_id": audit.tenant_id,
                    "status": "queued",
                    "model": audit.model,
                    "media_id": outputs[variant].media_id,
                    "prompt": item.prompt,
                    "params": to_params(spec.defense.config(sigma, answers)),
                    "request_hash": "",
                    "rounds_done": 0,
                    "aggregated_rounds": 0,
                    "cancel_requested": False,
                    "touched_at": now(),
                    "audit_item_id": item.id,
                    "audit_ref": ref(variant, sigma),
                }
            )
    stmt = insert(Job).values(rows).on_conflict_do_nothing(index_elements=["audit_item_id", "audit_ref"])
    return list(session.scalars(stmt.returning(Job.id)))


def jobs_of_item(session: Session, item_id: uuid.UUID) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.audit_item_id == item_id)))


def refresh_item(session: Session, audit: Audit, item: AuditItem) -> bool:
    """Mark ``item`` finished once it is attacked and all its defense jobs ended; True if it just did."""
    if item.finished_at is not None or item.attacked_at is None:
        return False
    jobs = jobs_of_item(session, item.id)
    if len(jobs) < len(spec_of(audit).refs()) or any(j.finished_at is None for j in jobs):
        return False
    item.finished_at = now()
    audit.done = audit.done + 1
    audit.touched_at = now()
    return True


def all_items_done(audit: Audit) -> bool:
    return audit.total > 0 and audit.done >= audit.total


def start_reporting(audit: Audit) -> None:
    """Every item is done: the report is next (and progress checks stop)."""
    audit.status, audit.touched_at = "reporting", now()


def succeed(audit: Audit, report: dict[str, Any]) -> None:
    """The report is written: the audit succeeded."""
    audit.report = report
    audit.status, audit.finished_at, audit.touched_at = "succeeded", now(), now()


def progress(session: Session, audit: Audit, at: datetime | None = None) -> dict[str, Any]:
    """Items done of total, and the finer work count (attacks + defense jobs) behind the ETA."""
    spec = spec_of(audit)
    attacked = session.scalar(
        select(func.count()).where(AuditItem.audit_id == audit.id, AuditItem.attacked_at.is_not(None))
    )
    jobs_done = session.scalar(
        select(func.count(Job.id))
        .join(AuditItem, Job.audit_item_id == AuditItem.id)
        .where(AuditItem.audit_id == audit.id, Job.finished_at.is_not(None))
    )
    work_total = audit.total * (1 + len(spec.refs()))
    work_done = (attacked or 0) + (jobs_done or 0)
    fraction = work_done / work_total if work_total else 0.0
    eta = None
    if audit.started_at is not None and audit.finished_at is None and 0 < fraction < 1:
        elapsed = ((at or now()) - audit.started_at).total_seconds()
        eta = elapsed * (1 - fraction) / fraction
    return {
        "done": audit.done,
        "total": audit.total,
        "attacked": attacked or 0,
        "jobs_done": jobs_done or 0,
        "jobs_total": audit.total * len(spec.refs()),
        "fraction": round(fraction, 4),
        "eta_s": None if eta is None else round(eta, 1),
    }


def cancel_audit(session: Session, audit: Audit) -> None:
    """Stop an audit: no more chunks, its unfinished defense jobs cancelled; no report."""
    if audit.finished_at is not None:
        raise Conflict(f"audit {audit.id} already finished ({audit.status})")
    audit.cancel_requested = True
    audit.status, audit.finished_at = "cancelled", now()
    query = (
        select(Job)
        .join(AuditItem, Job.audit_item_id == AuditItem.id)
        .where(AuditItem.audit_id == audit.id, Job.finished_at.is_(None))
        .with_for_update()
    )
    for job in session.scalars(query):
        cancel(job)


def fail_audit(session: Session, audit_id: str, error: str) -> Audit | None:
    audit = lock_audit(session, audit_id)
    if audit is None or audit.finished_at is not None:
        return None
    audit.status, audit.error, audit.finished_at = "failed", error[:4000], now()
    return audit


def stale_audits(session: Session, older_than: datetime, live: set[str]) -> list[Audit]:
    """Unfinished audits with an attack claimed by a dead worker, or that nobody touched since
    ``older_than``, locked; dead claims dropped and clocks reset, so each is moved on once per bound."""
    dead_items = select(AuditItem.audit_id).where(
        AuditItem.attacked_at.is_(None), claimed_by_the_dead(AuditItem.claimed_by, live)
    )
    lost = or_(Audit.touched_at < older_than, claimed_by_the_dead(Audit.claimed_by, live), Audit.id.in_(dead_items))
    audits = session.scalars(
        select(Audit).where(Audit.finished_at.is_(None), lost).with_for_update(skip_locked=True)
    ).all()
    for audit in audits:
        audit.touched_at = now()
        audit.claimed_by = audit.claimed_by if audit.claimed_by in live else None
        dead = claimed_by_the_dead(AuditItem.claimed_by, live)
        session.execute(update(AuditItem).where(AuditItem.audit_id == audit.id, dead).values(claimed_by=None))
    return list(audits)


def lost_chunks(session: Session, audit: Audit) -> list[int]:
    """Chunks dispatched but not attacked: a stale audit's chunks whose message may be lost."""
    query = select(AuditItem.chunk).where(
        AuditItem.audit_id == audit.id, AuditItem.dispatched_at.is_not(None), AuditItem.attacked_at.is_(None)
    )
    return list(session.scalars(query.distinct().order_by(AuditItem.chunk)))
