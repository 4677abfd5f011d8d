"""Audit steps on the ``audits`` queue (CPU): load the set and fan out, follow progress, judge
and write the report. The attacks run on the GPU queue (``gpu.attack_*``), the defense as
ordinary jobs through ``gpu.sample_round`` / ``cpu.aggregate``."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from shared.audits.datasets import load_set
from shared.audits.report import write_report
from shared.audits.store import (
    add_items,
    all_items_done,
    lock_audit,
    next_chunks,
    refresh_item,
    spec_of,
    unfinished_items,
)
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs.store import now
from shared.media.checks import check_media
from shared.media.store import save_media
from shared.models import AuditItem
from shared.storage import ObjectStore
from workers.celery_app import TaskQueue, send, task
from workers.outcomes import failed_audit, notify_audit


@task(TaskQueue.AUDITS, "audits.prepare")
def prepare(audit_id: str) -> None:
    """Load the benchmark set once, store its images as media, create the items, start the chunks
    (after the universal image, when that attack is asked for)."""
    settings = get_settings()
    store = ObjectStore.from_settings(settings)
    with failed_audit(audit_id), session_scope(settings.database_url) as session:
        audit = lock_audit(session, audit_id)
        if audit is None or audit.finished_at is not None or audit.status != "queued":
            return
        spec = spec_of(audit)
        with tempfile.TemporaryDirectory() as tmp:
            dataset = load_set(spec, store, str(audit.tenant_id), Path(tmp))
            media: dict[str, uuid.UUID] = {}  # questions share images: each file is checked and stored once
            rows = []
            for item in dataset.items:
                if item.image not in media:
                    data = dataset.image_bytes(item)
                    checked = check_media(data, settings)  # a broken or oversized image fails the audit, named
                    media[item.image] = save_media(
                        session,
                        store,
                        tenant_id=audit.tenant_id,
                        data=data,
                        content_type=checked.content_type,
                        modality=checked.modality,
                    ).id
                rows.append(
                    {
                        "key": item.key,
                        "category": item.category,
                        "kind": item.kind,
                        "prompt": item.prompt,
                        "label": item.label,
                        "media_id": media[item.image],
                    }
                )
        add_items(session, audit, rows)
        universal = any(a.name == "universal" for a in spec.attacks) and rows
        chunks = [] if universal else next_chunks(session, audit)
    if universal:
        send("gpu.attack_universal", [audit_id])
    for c in chunks:
        send("gpu.attack_chunk", [audit_id, c])


@task(TaskQueue.AUDITS, "audits.item_done")
def item_done(item_id: str) -> None:
    """A defense job of this item finished: maybe the item, the chunk, the audit did too."""
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        item = session.get(AuditItem, uuid.UUID(item_id))
        audit_id = str(item.audit_id) if item is not None else None
    if audit_id is not None:
        advance(audit_id, item_id)


@task(TaskQueue.AUDITS, "audits.progress")
def progress(audit_id: str) -> None:
    advance(audit_id, None)


def advance(audit_id: str, item_id: str | None) -> None:
    """Refresh item(s) under the audit's lock, send the next chunks, start the report when all are done."""
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        audit = lock_audit(session, audit_id)
        if audit is None or audit.finished_at is not None or audit.status != "running":
            return
        items = [session.get(AuditItem, uuid.UUID(item_id))] if item_id else unfinished_items(session, audit.id)
        for item in items:
            if item is not None:
                refresh_item(session, audit, item)
        chunks = next_chunks(session, audit)
        report = all_items_done(audit)
        if report:
            audit.status = "reporting"
    for c in chunks:
        send("gpu.attack_chunk", [audit_id, c])
    if report:
        send("audits.report", [audit_id])


@task(TaskQueue.AUDITS, "audits.report")
def report(audit_id: str) -> None:
    """Judge every answer (batched per judge), store the verdicts per item, write the JSON, CSV and
    HTML report to the object store, finish the audit, send its webhook."""
    settings = get_settings()
    with failed_audit(audit_id), session_scope(settings.database_url) as session:
        audit = lock_audit(session, audit_id)
        if audit is None or audit.finished_at is not None or audit.status != "reporting":
            return
        audit.report = write_report(session, audit, ObjectStore.from_settings(settings), settings.public_url)
        audit.status, audit.finished_at, audit.touched_at = "succeeded", now(), now()
    notify_audit(audit)
