"""The one Celery app: queues ``gpu`` (generation), ``cpu`` (embedding and voting), ``webhooks``.

Task payloads are ids. GPU tasks ack late with prefetch 1 and are re-queued if the worker
dies mid-round (``reject_on_worker_lost``); rounds are idempotent, so a redelivery is harmless.
"""

from __future__ import annotations

from enum import StrEnum

from celery import Celery
from kombu import Queue

from shared.config import get_settings


class TaskQueue(StrEnum):
    GPU = "gpu"
    CPU = "cpu"
    WEBHOOKS = "webhooks"


def make_app() -> Celery:
    settings = get_settings()
    app = Celery("smoothguard", broker=settings.redis_url, include=["workers.gpu.tasks", "workers.cpu.tasks"])
    app.conf.update(
        task_queues=[Queue(q.value) for q in TaskQueue],
        task_default_queue=TaskQueue.CPU.value,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app()


def task(queue: TaskQueue, name: str):
    """Every task through here: an explicit name and its queue."""
    return app.task(name=name, queue=queue.value)
