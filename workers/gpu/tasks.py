"""GPU worker: a job's round (ONE batched generate over its candidates), an audit's attacks, a
chunk of items at a time (batched), and robustify runs. The steps are ``shared.jobs.steps``,
``shared.audits.steps`` and ``shared.robust_models.steps``."""

from __future__ import annotations

import time
from typing import Any

from celery.signals import worker_ready
from celery.utils.log import get_logger

from shared.audits import steps as audit_steps
from shared.config import get_settings
from shared.jobs import steps as job_steps
from shared.pipeline import QueueName, Step
from shared.robust_models import steps as robust_model_steps
from workers.celery_app import queue_names, send, task

log = get_logger(__name__)


@worker_ready.connect
def warm_up_generator(sender: Any = None, **_: Any) -> None:
    """A GPU-queue worker with ``compile_generator`` compiles its model's batch shapes before its
    first task (``shared.backends.compiled.warm_up``); the heartbeat already runs meanwhile."""
    if QueueName.GPU.value in queue_names(sender):
        from shared.backends.compiled import warm_up

        start = time.perf_counter()
        if sizes := warm_up(get_settings()):
            log.info("compiled generation warmed up for batch sizes %s in %.0f s", sizes, time.perf_counter() - start)


@task(Step.SAMPLE_ROUND)
def sample_round(job_id: str, round_index: int) -> None:
    send(job_steps.sample_round(get_settings(), job_id, round_index))


@task(Step.ATTACK_UNIVERSAL)
def attack_universal(audit_id: str) -> None:
    send(audit_steps.attack_universal(get_settings(), audit_id))


@task(Step.ATTACK_CHUNK)
def attack_chunk(audit_id: str, chunk: int) -> None:
    send(audit_steps.attack_chunk(get_settings(), audit_id, chunk))


@task(Step.ROBUSTIFY)
def robustify(model_id: str) -> None:
    send(robust_model_steps.robustify(get_settings(), model_id))
