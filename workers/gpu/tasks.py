"""GPU worker: one round of a job = ONE batched generate over the round's candidates."""

from __future__ import annotations

from shared.backends.registry import load_generator
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs import config_of, lock, mark_cancelled, needs_round, record_round, start
from shared.media import load_audio, load_image
from shared.models import Media
from shared.smoothing.noise import plan_round
from shared.storage import ObjectStore
from workers.celery_app import TaskQueue, send, task
from workers.outcomes import failed, notify


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
