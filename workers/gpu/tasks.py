"""GPU worker: one round of a job = ONE batched generate over the round's candidates; an audit's
attacks, a chunk of items at a time (batched)."""

from __future__ import annotations

from shared.audits.attack import ChunkItem, Variant, answer_all, attack_items, png_roundtrip, universal_image
from shared.audits.store import create_defense_jobs, items_of, lock_audit, next_chunks, spec_of
from shared.backends.registry import load_generator
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs.store import config_of, lock, mark_cancelled, needs_round, now, record_round, start
from shared.media.decode import load_audio, load_image
from shared.media.store import save_media
from shared.models import Media
from shared.smoothing.noise import plan_round
from shared.storage import ObjectStore
from workers.celery_app import TaskQueue, send, task
from workers.outcomes import failed, failed_audit, notify


@task(TaskQueue.GPU, "gpu.sample_round")
def sample_round(job_id: str, round_index: int) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:  # claim: nothing runs twice, cancel is honoured
        job = lock(session, job_id)
        if job is None or not needs_round(job, round_index):
            return
        if job.cancel_requested:
            mark_cancelled(job)
        else:
            start(job)
            media = session.get(Media, job.media_id)
            assert media is not None
            key, modality, prompt, model, config = (
                media.object_key,
                media.modality,
                job.prompt,
                job.model,
                config_of(job),
            )
    if job.status == "cancelled":
        notify(job)
        return
    with failed(job_id):
        data = ObjectStore.from_settings(settings).get(key)
        content = load_image(data) if modality == "image" else load_audio(data)
        specs = plan_round(config, round_index)
        gens = load_generator(model).generate(content, prompt, specs, max_new_tokens=config.max_new_tokens)
    with session_scope(settings.database_url) as session:
        job = lock(session, job_id)
        if job is None or job.finished_at is not None:
            return
        record_round(session, job, specs, gens)
    send("cpu.aggregate", [job_id])


@task(TaskQueue.GPU, "gpu.attack_universal")
def attack_universal(audit_id: str) -> None:
    """The audit's one universal adversarial image (base: the first item's image; prompts: the first items')."""
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        audit = lock_audit(session, audit_id)
        if audit is None or audit.finished_at is not None or audit.universal_media_id is not None:
            return
        spec, model, tenant = spec_of(audit), audit.model, audit.tenant_id
        attack = next(a for a in spec.attacks if a.name == "universal")
        items = items_of(session, audit.id)[: attack.universal_prompts]
        keys = [session.get(Media, i.media_id).object_key for i in items]  # type: ignore[union-attr]
        prompts, targets = [i.prompt for i in items], [i.target or "" for i in items]
    store = ObjectStore.from_settings(settings)
    with failed_audit(audit_id):
        image, stats = universal_image(load_generator(model), spec, load_image(store.get(keys[0])), prompts, targets)
        data = png_roundtrip(image)[1]
    with session_scope(settings.database_url) as session:
        audit = lock_audit(session, audit_id)
        if audit is None or audit.finished_at is not None:
            return
        media = save_media(session, store, tenant_id=tenant, data=data, content_type="image/png", modality="image")
        audit.universal_media_id, audit.universal = media.id, stats | {"prompts": len(prompts)}
        chunks = next_chunks(session, audit)
    for c in chunks:
        send("gpu.attack_chunk", [audit_id, c])


@task(TaskQueue.GPU, "gpu.attack_chunk")
def attack_chunk(audit_id: str, chunk: int) -> None:
    """Attack a chunk of items (batched), answer every variant undefended, store the adversarial
    images, fan out the defense jobs. Items attacked before (a redelivery) are not attacked again."""
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        audit = lock_audit(session, audit_id)
        if audit is None or audit.finished_at is not None:
            return
        spec, model, tenant = spec_of(audit), audit.model, audit.tenant_id
        todo = [
            (i.id, i.prompt, i.target, session.get(Media, i.media_id).object_key)  # type: ignore[union-attr]
            for i in items_of(session, audit.id, chunk)
            if i.attacked_at is None
        ]
        universal_key = session.get(Media, audit.universal_media_id).object_key if audit.universal_media_id else None  # type: ignore[union-attr]
    store = ObjectStore.from_settings(settings)
    outputs: dict = {}
    if todo:
        with failed_audit(audit_id):
            outputs = attack_and_answer(load_generator(model), spec, todo, store, universal_key)
    with session_scope(settings.database_url) as session:
        audit = lock_audit(session, audit_id)
        if audit is None or audit.finished_at is not None:
            return
        new_jobs = []
        for item in items_of(session, audit.id, chunk):
            if item.id in outputs and item.attacked_at is None:
                stored = {"clean": item.media_id, "universal": audit.universal_media_id}
                item.outputs = {
                    name: save_variant(session, store, tenant, v, stored.get(name))
                    for name, v in outputs[item.id].items()
                }
                item.attacked_at = now()
            if item.attacked_at is not None:
                new_jobs += create_defense_jobs(session, audit, item)
        audit.touched_at = now()
    for job_id in new_jobs:
        send("gpu.sample_round", [str(job_id), 0])
    send("audits.progress", [audit_id])


def attack_and_answer(generator, spec, todo, store: ObjectStore, universal_key: str | None) -> dict:
    items = [ChunkItem(prompt, load_image(store.get(key)), target) for _, prompt, target, key in todo]
    universal = load_image(store.get(universal_key)) if universal_key else None
    clean = generator.answer_batch(
        [i.image for i in items], [i.prompt for i in items], max_new_tokens=spec.defense.max_new_tokens
    )
    variants = attack_items(generator, spec, items, [g.text for g in clean], universal)
    answer_all(generator, items, variants, spec.defense.max_new_tokens)
    return {item_id: row for (item_id, *_), row in zip(todo, variants, strict=True)}


def save_variant(session, store: ObjectStore, tenant, v: Variant, media_id) -> dict:
    """The variant's entry in ``outputs``: its media (stored now if it is a new adversarial image)."""
    if v.png is not None:
        media_id = save_media(
            session, store, tenant_id=tenant, data=v.png, content_type="image/png", modality="image"
        ).id
    return {"media_id": str(media_id), "answer": v.answer, **v.stats}
