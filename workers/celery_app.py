"""The one Celery app: the queues of ``shared.pipeline.QueueName`` (``gpu`` generation and attacks,
``cpu`` votes and the sweeper, ``webhooks`` deliveries, ``audits`` an audit's bookkeeping, judging
and report); its tasks are the pipeline's ``Step`` values, and what follows what is the pipeline's.

Task payloads are ids. Tasks ack late with prefetch 1: a task whose worker dies (even SIGKILL)
is delivered again — by the broker after ``broker_visibility_timeout_s`` on Redis, at once for a
dead pool child (``reject_on_worker_lost``). Every step is idempotent, so a redelivery is harmless.
A fault of the database, broker or object store (``shared.faults``) retries the task with backoff.

Nothing is built at import: the API makes its sender from its own settings (``CelerySender``), a
worker process its app from the environment's (``worker_app``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError as BrokerError
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.config import Settings, get_settings
from shared.faults import TRANSIENT_ERRORS, QueueUnavailable
from shared.liveness import keep_alive
from shared.pipeline import Message, QueueName, Step

log = logging.getLogger(__name__)
TASK_MODULES = ("workers.gpu.tasks", "workers.cpu.tasks", "workers.webhooks.tasks", "workers.audits.tasks")


def make_app(settings: Settings, tasks: Iterable[str] = ()) -> Celery:
    """An app on the settings' broker; ``tasks`` are the modules a worker imports (a sender needs none)."""
    app = Celery("smoothguard", broker=settings.redis_url, include=list(tasks))
    app.conf.update(
        task_queues=[Queue(q.value, Exchange(q.value, type="direct"), routing_key=q.value) for q in QueueName],
        task_default_queue=QueueName.CPU.value,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport=f"{__name__}:BrokerTransport",  # kombu's Redis transport, surviving a broker restart
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout_s},
        beat_schedule={
            "sweep": {"task": Step.SWEEP.value, "schedule": settings.sweep_interval_s},
            "dispatch": {"task": Step.DISPATCH.value, "schedule": settings.dispatch_interval_s},
            "webhooks": {"task": Step.DELIVER_DUE.value, "schedule": settings.webhook_poll_s},
        },
        worker_hijack_root_logger=False,
    )
    return app


class BrokerChannel(kombu_redis.Channel):
    """kombu's Redis channel, closable after the broker went away. On a lost connection Celery's
    consumer first ``collect()``s it (the channel's close fails on the dead socket, then the
    transport is detached: ``transport.client = None``), then closes it again; that second close
    restores the unacked messages through a new pool built from ``transport.client`` — an
    AttributeError, not a connection error, so the worker exited ("Unrecoverable error: ...
    'hostname'"). A connection error instead lets the consumer reconnect; the unacked messages stay
    in Redis's unacked hash, handed out again after the visibility timeout."""

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-any-return]


class BrokerTransport(kombu_redis.Transport):
    Channel = BrokerChannel


class CelerySender:
    """Puts pipeline messages on the broker, each on its step's queue (the sender imports no task
    module, nor torch with it)."""

    def __init__(self, app: Celery):
        self.app = app

    @classmethod
    def from_settings(cls, settings: Settings) -> CelerySender:
        return cls(make_app(settings))

    def send(self, messages: Iterable[Message]) -> None:
        """``QueueUnavailable`` when the broker cannot take them (the caller's rows are committed:
        a retry, or the sweeper, sends again)."""
        try:
            for m in messages:
                self.app.send_task(m.step.value, args=list(m.args), queue=m.step.queue.value)
        except BrokerError as exc:
            raise QueueUnavailable(f"the queue (Redis) is unavailable: {exc}") from exc


@cache
def worker_app() -> Celery:
    """The workers' (and the beat's) app, its tasks included, on the process's settings."""
    return make_app(get_settings(), TASK_MODULES)


# a step that met a fault of the database, broker or object store is retried: 1 s, 2 s, 4 s, … up
# to a minute apart, for about half an hour; a job still stuck after that is the sweeper's
RETRY = {
    "autoretry_for": (*TRANSIENT_ERRORS, BrokerError),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 40,
}


def task(step: Step) -> Callable[[Callable[..., Any]], Any]:
    """Every task through here: its name and queue are its step's; infrastructure faults retry."""
    return worker_app().task(name=step.value, queue=step.queue.value, **RETRY)


def send(messages: Iterable[Message]) -> None:
    """What a task's step returned (its transaction has committed)."""
    sender().send(messages)


def sender() -> CelerySender:
    """The workers' sender, for steps that send inside their transaction (dispatching)."""
    return CelerySender(worker_app())


HEARTBEAT = threading.Event()  # set when the worker stops


@worker_ready.connect
def start_heartbeat(sender: Any = None, **_: Any) -> None:
    """A worker process (not the beat) writes that it is alive every few seconds (``shared.liveness``)."""
    keep_alive(get_settings(), ",".join(sorted(queue_names(sender))), HEARTBEAT)


@worker_ready.connect
def warm_up_generator(sender: Any = None, **_: Any) -> None:
    """A GPU-queue worker with ``compile_generator`` compiles its model's batch shapes before its
    first task (``shared.backends.compiled.warm_up``); the heartbeat already runs meanwhile."""
    if QueueName.GPU.value in queue_names(sender):
        from shared.backends.compiled import warm_up

        start = time.perf_counter()
        if sizes := warm_up(get_settings()):
            log.info("compiled generation warmed up for batch sizes %s in %.0f s", sizes, time.perf_counter() - start)


def queue_names(consumer: Any) -> set[str]:
    try:
        return {q.name for q in consumer.task_consumer.queues}
    except AttributeError:
        return set()


@worker_shutdown.connect
def stop_heartbeat(**_: Any) -> None:
    HEARTBEAT.set()
