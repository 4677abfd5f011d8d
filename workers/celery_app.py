"""The one Celery app: queues ``gpu`` (generation), ``cpu`` (embedding, voting, the sweeper),
``webhooks`` (deliveries), ``audits`` (an audit's bookkeeping, judging and report; its attacks
run on ``gpu``).

Task payloads are ids. Tasks ack late with prefetch 1: a task whose worker dies (even SIGKILL)
is delivered again — by the broker after ``broker_visibility_timeout_s`` on Redis, at once for a
dead pool child (``reject_on_worker_lost``). Every step is idempotent, so a redelivery is harmless.
"""

from __future__ import annotations

from enum import StrEnum

from celery import Celery
from kombu import Exchange, Queue

from shared.config import get_settings


class TaskQueue(StrEnum):
    GPU = "gpu"
    CPU = "cpu"
    WEBHOOKS = "webhooks"
    AUDITS = "audits"


def make_app() -> Celery:
    settings = get_settings()
    app = Celery(
        "smoothguard",
        broker=settings.redis_url,
        include=["workers.gpu.tasks", "workers.cpu.tasks", "workers.webhooks.tasks", "workers.audits.tasks"],
    )
    app.conf.update(
        task_queues=[Queue(q.value, Exchange(q.value, type="direct"), routing_key=q.value) for q in TaskQueue],
        task_default_queue=TaskQueue.CPU.value,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
        beat_schedule={"sweep": {"task": "cpu.sweep", "schedule": settings.sweep_interval_s}},
        worker_hijack_root_logger=False,
    )
    return app


app = make_app()


def task(queue: TaskQueue, name: str):
    """Every task through here: named ``<queue>.<task>``, so a name alone says where it runs."""
    assert name.startswith(f"{queue.value}."), name
    return app.task(name=name, queue=queue.value)


def send(name: str, args: list, countdown: float | None = None) -> None:
    """Send by name to the queue the name starts with (callers need not import the task's module,
    nor torch with it)."""
    app.send_task(name, args=args, queue=TaskQueue(name.split(".", 1)[0]).value, countdown=countdown)
