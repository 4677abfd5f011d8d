"""An audit's steps as the workers run them: prepare (load the set, store its images, create the
items), the universal image, a chunk's attacks, progress, the report, the sweep.

The same contract as a job's steps (``shared.jobs.steps``): each locks the audit row and skips
what is done already, changes the audit's status only here and in ``shared.audits.store``, and
returns the messages that follow (``shared.pipeline``) for the task to send after the commit. A
step that raises ends the audit ``failed`` with the reason. The attacks run on the GPU queue; the
defense runs as ordinary jobs.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from shared import pipeline
from shared.audits.attack import (
    CODECS,
    ChunkItem,
    Progress,
    Variant,
    answer_all,
    attack_items,
    codec_of,
    png_roundtrip,
    universal_image,
)
from shared.audits.datasets import dataset_limits, load_set
from shared.audits.report import write_report
from shared.audits.spec import AuditSpec, DatasetSpec
from shared.audits.store import (
    VariantOutput,
    add_items,
    all_items_done,
    awaits_universal,
    create_defense_jobs,
    fail_audit,
    items_of,
    lost_chunks,
    next_chunks,
    outputs_of,
    refresh_item,
    set_outputs,
    spec_of,
    stale_audits,
    start_reporting,
    succeed,
    unfinished_items,
)
from shared.backends.registry import load_generator
from shared.config import Settings
from shared.db import locked_unfinished, session_scope
from shared.errors import Invalid
from shared.faults import raise_if_transient
from shared.jobs.store import now
from shared.liveness import held_elsewhere, live_workers, worker_id
from shared.media.checks import check_media
from shared.media.decode import load_image
from shared.media.store import save_media
from shared.models import Audit, AuditItem, Media
from shared.pipeline import Message
from shared.storage import ObjectStore
from shared.webhooks.schedule import schedule_webhook

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemSource:
    """An item's attack inputs, copied from the rows under the lock (the attack runs without it)."""

    id: uuid.UUID
    prompt: str
    target: str | None
    object_key: str
    attacked: dict[str, tuple[str, VariantOutput]] = field(default_factory=dict)  # variant → (object key, output)


def prepare(settings: Settings, audit_id: str) -> list[Message]:
    """Load the benchmark set once, store its images or clips as media, create the items; the chunks
    follow (after the universal image, when that attack is asked for)."""
    try:
        with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
            if audit is None or audit.status != "queued":
                return []
            spec = spec_of(audit)
            add_items(session, audit, load_items(session, settings, audit, spec))
            universal = awaits_universal(audit) and audit.total > 0
            chunks = [] if universal else next_chunks(session, audit)
            return pipeline.after_prepare(audit, universal=universal, chunks=chunks)
    except Exception as exc:
        return end_failed(settings, audit_id, exc)


def load_items(session: Session, settings: Settings, audit: Audit, spec: AuditSpec) -> list[dict[str, Any]]:
    """The set's items as rows. Questions share images (clips): each file is checked and stored
    once; a broken or oversized one, or one of the other modality, fails the audit, named."""
    store = ObjectStore.from_settings(settings)
    media: dict[str, uuid.UUID] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_set(spec, store, str(audit.tenant_id), Path(tmp), dataset_limits(settings))
        for item in dataset.items:
            if item.media not in media:
                data = dataset.media_bytes(item)
                media[item.media] = store_item_media(session, store, settings, audit.tenant_id, spec.dataset, data)
            fields: dict[str, Any] = {
                "key": item.key,
                "category": item.category,
                "kind": item.kind,
                "prompt": item.prompt,
            }
            rows.append(fields | {"label": item.label, "media_id": media[item.media]})
    return rows


def store_item_media(
    session: Session, store: ObjectStore, settings: Settings, tenant_id: uuid.UUID, dataset: DatasetSpec, data: bytes
) -> uuid.UUID:
    """One file of the set, checked like an upload and of the set's modality, stored as media."""
    checked = check_media(data, settings)
    if checked.modality != dataset.modality:
        raise Invalid(f"the {dataset.format} set holds {checked.modality}, not {dataset.modality}")
    saved = save_media(
        session, store, tenant_id=tenant_id, data=data, content_type=checked.content_type, modality=dataset.modality
    )
    return saved.id


def attack_universal(settings: Settings, audit_id: str) -> list[Message]:
    """The audit's ONE universal adversarial image (base: the first item's image; prompts: the
    first items'); the chunks follow, each answered on it."""
    with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
        if audit is None or audit.universal_media_id is not None or held_elsewhere(session, settings, audit.claimed_by):
            return []  # made already, or a live worker is making it
        audit.claimed_by, audit.touched_at = worker_id(), now()
        spec, model = spec_of(audit), audit.model
        count = next(a for a in spec.attacks if a.name == "universal").universal_prompts
        sources = item_sources(session, items_of(session, audit.id)[:count])
    store = ObjectStore.from_settings(settings)
    try:
        data, stats = make_universal(store, load_generator(model, settings=settings), spec, sources)
    except Exception as exc:
        return end_failed(settings, audit_id, exc)
    with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
        if audit is None:
            return []
        media = save_media(
            session, store, tenant_id=audit.tenant_id, data=data, content_type="image/png", modality="image"
        )
        audit.universal_media_id, audit.universal, audit.claimed_by = media.id, stats, None
        return pipeline.attack_chunks(audit, next_chunks(session, audit))


def make_universal(
    store: ObjectStore, generator: Any, spec: AuditSpec, sources: list[ItemSource]
) -> tuple[bytes, dict]:
    """The universal image as PNG bytes, and the attack's statistics."""
    base = load_image(store.get(sources[0].object_key))
    prompts, targets = [s.prompt for s in sources], [s.target or "" for s in sources]
    image, stats = universal_image(generator, spec, base, prompts, targets)
    return png_roundtrip(image)[1], stats | {"prompts": len(sources)}


def attack_chunk(settings: Settings, audit_id: str, chunk: int) -> list[Message]:
    """Attack a chunk of items (batched), answer every variant undefended, store the adversarial
    images; the defense jobs follow. Each attack's images are stored as it finishes: a run after a
    lost worker does not repeat finished attacks, and items attacked before are not attacked again."""
    with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
        if audit is None:
            return []
        spec, model = spec_of(audit), audit.model
        unattacked = [i for i in items_of(session, audit.id, chunk) if i.attacked_at is None]
        if any(held_elsewhere(session, settings, claim) for claim in {i.claimed_by for i in unattacked}):
            return []  # a duplicate: a live worker is attacking this chunk
        for item in unattacked:
            item.claimed_by = worker_id()
        todo = item_sources(session, unattacked)
        universal = session.get(Media, audit.universal_media_id) if audit.universal_media_id else None
        universal_key = universal.object_key if universal is not None else None
    store = ObjectStore.from_settings(settings)
    outputs: dict[uuid.UUID, dict[str, Variant]] = {}
    try:
        if todo:
            saver = progress_saver(settings, store, audit_id, todo)
            outputs = attack_and_answer(
                store, load_generator(model, settings=settings), spec, todo, universal_key, saver
            )
    except Exception as exc:
        return end_failed(settings, audit_id, exc)
    with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
        if audit is None:
            return []
        return pipeline.after_chunk(audit, record_chunk(session, store, audit, chunk, outputs))


def item_sources(session: Session, items: list[AuditItem]) -> list[ItemSource]:
    """Each item's inputs, and the attacks a run before this one finished for it (their images stored)."""

    def key(media_id: uuid.UUID) -> str:
        media = session.get(Media, media_id)
        assert media is not None
        return media.object_key

    return [
        ItemSource(i.id, i.prompt, i.target, key(i.media_id), {n: (key(o.media_id), o) for n, o in stored(i).items()})
        for i in items
    ]


def stored(item: AuditItem) -> dict[str, VariantOutput]:
    """An unattacked item's attack variants stored so far (progress of an interrupted chunk)."""
    return {n: o for n, o in outputs_of(item).items() if n != "clean" and not o.shared}


def progress_saver(settings: Settings, store: ObjectStore, audit_id: str, todo: list[ItemSource]) -> Progress:
    """Stores an attack's images and numbers for every item of the chunk as soon as the attack finishes."""

    def save(variant: str, made: list[Variant]) -> None:
        with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
            if audit is None:
                return
            for source, v in zip(todo, made, strict=True):
                item = session.get(AuditItem, source.id)
                assert item is not None
                out = save_variant(session, store, audit.tenant_id, v, None)
                v.media_id, v.data = out.media_id, None
                set_outputs(item, outputs_of(item) | {variant: out})
            audit.touched_at = now()

    return save


def attack_and_answer(
    store: ObjectStore,
    generator: Any,
    spec: AuditSpec,
    todo: list[ItemSource],
    universal_key: str | None,
    on_attack: Progress | None = None,
) -> dict[uuid.UUID, dict[str, Variant]]:
    """Per item: its variants (clean, one per attack), each answered undefended, batched (the
    vision and audio generators answer batches too). Attacks stored by an earlier run are read
    back, not run again."""
    load = CODECS[spec.dataset.modality].load
    items = [ChunkItem(s.prompt, load(store.get(s.object_key)), s.target) for s in todo]
    universal = load_image(store.get(universal_key)) if universal_key else None
    tokens = spec.defense.max_new_tokens
    clean = generator.answer_batch([i.media for i in items], [i.prompt for i in items], max_new_tokens=tokens)
    done = [{n: read_variant(store, k, o, load) for n, (k, o) in s.attacked.items()} for s in todo]
    variants = attack_items(generator, spec, items, [g.text for g in clean], universal, done, on_attack)
    answer_all(generator, items, variants, tokens)
    return {s.id: row for s, row in zip(todo, variants, strict=True)}


def read_variant(store: ObjectStore, object_key: str, out: VariantOutput, load: Callable[[bytes], Any]) -> Variant:
    stats = out.model_dump(exclude={"media_id", "answer"}, exclude_none=True)
    return Variant(load(store.get(object_key)), out.answer, stats, media_id=out.media_id)


def record_chunk(
    session: Session, store: ObjectStore, audit: Audit, chunk: int, outputs: dict[uuid.UUID, dict[str, Variant]]
) -> list[uuid.UUID]:
    """Store the chunk's new outputs and create the defense jobs of its attacked items; returns the
    ids of the jobs created now (none for those a previous run made)."""
    new_jobs = []
    universal = [a.variant for a in spec_of(audit).attacks if a.name == "universal"]
    for item in items_of(session, audit.id, chunk):
        if item.id in outputs and item.attacked_at is None:
            known = {"clean": item.media_id} | {v: audit.universal_media_id for v in universal}
            saved = {
                n: save_variant(session, store, audit.tenant_id, v, v.media_id or known.get(n))
                for n, v in outputs[item.id].items()
            }
            set_outputs(item, saved)
            item.attacked_at, item.claimed_by = now(), None
        if item.attacked_at is not None:
            new_jobs += create_defense_jobs(session, audit, item)
    audit.touched_at = now()
    return new_jobs


def save_variant(
    session: Session, store: ObjectStore, tenant_id: uuid.UUID, v: Variant, media_id: uuid.UUID | None
) -> VariantOutput:
    """The variant's entry in ``outputs``: its media (stored now if it is a new adversarial one)."""
    if v.data is not None:
        codec = codec_of(v.media)
        media_id = save_media(
            session, store, tenant_id=tenant_id, data=v.data, content_type=codec.content_type, modality=codec.modality
        ).id
    assert media_id is not None, "the clean and universal images are stored before their variants"
    return VariantOutput(media_id=media_id, answer=v.answer, **v.stats)


def item_done(settings: Settings, item_id: str) -> list[Message]:
    """A defense job of this item finished: maybe the item, the chunk, the audit did too."""
    with session_scope(settings.database_url) as session:
        item = session.get(AuditItem, uuid.UUID(item_id))
        audit_id = item.audit_id if item is not None else None
    return [] if audit_id is None else advance(settings, str(audit_id), item_id)


def progress(settings: Settings, audit_id: str) -> list[Message]:
    """Look at every unfinished item (after a chunk is attacked, or for the sweeper)."""
    return advance(settings, audit_id, None)


def advance(settings: Settings, audit_id: str, item_id: str | None) -> list[Message]:
    """Refresh the item (or every unfinished one) under the audit's lock; free slots get the next
    chunks, and once every item is done the report follows."""
    with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
        if audit is None or audit.status != "running":
            return []
        items = [session.get(AuditItem, uuid.UUID(item_id))] if item_id else unfinished_items(session, audit.id)
        for item in items:
            if item is not None:
                refresh_item(session, audit, item)
        chunks = next_chunks(session, audit)
        if all_items_done(audit):
            start_reporting(audit)
        return pipeline.after_progress(audit, chunks)


def report(settings: Settings, audit_id: str) -> list[Message]:
    """Judge every answer (batched per judge), store the verdicts per item, write the JSON, CSV and
    HTML report to the object store; the audit succeeded, its webhook follows."""
    try:
        with locked_unfinished(settings.database_url, Audit, audit_id) as (session, audit):
            if audit is None or audit.status != "reporting":
                return []
            store = ObjectStore.from_settings(settings)
            succeed(audit, write_report(session, audit, store, settings))
            schedule_webhook(session, settings, audit)
            return pipeline.after_audit_finished(audit)
    except Exception as exc:
        return end_failed(settings, audit_id, exc)


def sweep_audits(settings: Settings) -> list[Message]:
    """What moves on again every audit whose worker died mid-attack, or untouched for ``stale_after_s``
    (a message may be lost)."""
    older_than = now() - timedelta(seconds=settings.stale_after_s)
    with session_scope(settings.database_url) as session:
        stale = stale_audits(session, older_than, live_workers(session, settings))
        return [
            m
            for audit in stale
            for m in pipeline.resume_audit(audit, lost_chunks(session, audit), awaits_universal=awaits_universal(audit))
        ]


def end_failed(settings: Settings, audit_id: str, exc: Exception) -> list[Message]:
    """A step raised: the audit ends ``failed`` with the reason (the traceback goes to the log);
    its webhook follows."""
    raise_if_transient(exc)  # the database, broker or object store: the task wrapper retries
    log.error("audit %s failed", audit_id, exc_info=exc)
    with session_scope(settings.database_url) as session:
        audit = fail_audit(session, audit_id, f"{type(exc).__name__}: {exc}")
        schedule_webhook(session, settings, audit)
        return pipeline.after_audit_finished(audit) if audit is not None else []
