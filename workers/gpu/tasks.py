"""GPU worker: one round of a job = ONE batched generate over the round's candidates."""

from __future__ import annotations

import uuid

from shared.backends.registry import load_generator
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs import config_of, mark_cancelled, record_round
from shared.media import load_audio, load_image
from shared.models import Job, Media
from shared.smoothing.noise import plan_round
from shared.storage import ObjectStore
from workers.celery_app import TaskQueue, task


@task(TaskQueue.GPU, "gpu.sample_round")
def sample_round(job_id: str, round_index: int) -> None:
    settings = get_settings()
    with session_scope(settings.database_url) as session:
        job = session.get(Job, uuid.UUID(job_id))
        if job is None or job.finished_at is not None:
            return
        if job.cancel_requested:
            mark_cancelled(job)
            return
        media = session.get(Media, job.media_id)
        assert media is not None
        data = ObjectStore.from_settings(settings).get(media.object_key)
        content = load_image(data) if media.modality == "image" else load_audio(data)
        config = config_of(job)
        specs = plan_round(config, round_index)
        gens = load_generator(job.model).generate(content, job.prompt, specs, max_new_tokens=config.max_new_tokens)
        record_round(session, job, specs, gens)
    from workers.cpu.tasks import aggregate

    aggregate.delay(job_id)
