"""The one Celery app: the queues of ``shared.pipeline.QueueName`` (``gpu`` generation and attacks,
``cpu`` votes and the sweeper, ``webhooks`` deliveries, ``audits`` an audit's bookkeeping, judging
and report); its tasks are the pipeline's ``Step`` values, and what follows what is the pipeline's.

Task payloads are ids. Tasks ack late with prefetch 1: a task whose worker dies (even SIGKILL)
is delivered again — by the broker after ``broker_visibility_timeout_s`` on Redis, at once for a
dead pool child (``reject_on_worker_lost``). Every step is idempotent, so a redelivery is harmless.
A fault of the database, broker or object store (``shared.faults``) retries the task with backoff.

Lanes: a GPU worker consumes ``gpu`` then ``gpu-audits`` and, with kombu's ``priority`` queue
order, always pops ``gpu`` first (one BRPOP over both lists, in that order). Start: a worker
loads its models before it consumes — a GPU lane's after checking its device, the CPU worker's
embedder (``shared.readiness``); one that cannot exits with ``EXIT_CANNOT_SERVE`` having taken
nothing. Stop: SIGTERM is Celery's warm shutdown (no new task; the running one finishes); a task
still running ``shutdown_grace_s`` later is handed back — its worker's claims released and its
message requeued at once — so a rolling update loses no work and waits neither for the
visibility timeout nor for the sweeper.

Observability (``shared.observability``): workers send Celery's task events (Flower, exporters);
every message carries its send time and the trace context in its headers; a worker serves its own
metrics, binds each task's ids to its log lines and span, and times it by outcome.

Nothing is built at import: the API makes its sender from its own settings (``CelerySender``), a
worker process its app from the environment's (``worker_app``).
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from celery import Celery
from celery.exceptions import Reject
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError as BrokerError
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.config import Settings, get_settings
from shared.faults import TRANSIENT_ERRORS, QueueUnavailable
from shared.liveness import keep_alive
from shared.observability import logs, metrics, tracing
from shared.observability.tasks import task_ids
from shared.pipeline import GPU_LANES, Message, QueueName, Step

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
        broker_transport_options={
            "visibility_timeout": settings.broker_visibility_timeout_s,
            "queue_order_strategy": "priority",  # a worker's queues in its -Q order, every time: gpu before gpu-audits
        },
        beat_schedule={
            "sweep": {"task": Step.SWEEP.value, "schedule": settings.sweep_interval_s},
            "dispatch": {"task": Step.DISPATCH.value, "schedule": settings.dispatch_interval_s},
            "webhooks": {"task": Step.DELIVER_DUE.value, "schedule": settings.webhook_poll_s},
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # task events for Flower or a Celery exporter (-E)
        task_send_sent_event=True,  # and a task-sent event from every sender
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
                self.app.send_task(m.step.value, args=list(m.args), queue=m.queue.value)
        except BrokerError as exc:
            raise QueueUnavailable(f"the queue (Redis) is unavailable: {exc}") from exc


def run(argv: list[str]) -> int:
    """``celery <argv>`` on the workers' app; its exit code (``Celery.start`` drops the code click returns)."""
    from celery.bin.celery import celery

    celery.params[0].default = worker_app()
    code = celery.main(args=argv, standalone_mode=False)
    return code if isinstance(code, int) else 0


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
    """Every task through here: its name and queue are its step's; infrastructure faults retry;
    a task the worker's shutdown interrupts is handed back (``handing_back``)."""

    def register(run: Callable[..., Any]) -> Any:
        return worker_app().task(name=step.value, queue=step.queue.value, **RETRY)(handing_back(run))

    return register


class HandBack(BaseException):
    """Raised in a task still running ``shutdown_grace_s`` after SIGTERM (a BaseException: no
    step's error handling mistakes it for a failure of the job)."""


RUNNING = threading.Event()  # a task runs in the main thread (the solo pool's), where SIGALRM lands


def handing_back(run: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run)
    def task_body(*args: Any, **kwargs: Any) -> Any:
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            RUNNING.set()
        try:
            return run(*args, **kwargs)
        except HandBack:
            leave()  # this worker's claims are the dead's now: the requeued message is taken at once
            raise Reject("the worker is shutting down: task handed back", requeue=True) from None
        finally:
            if in_main:
                RUNNING.clear()
                signal.setitimer(signal.ITIMER_REAL, 0)  # a hand-back not needed: no alarm after the task

    return task_body


@worker_shutting_down.connect
def hand_back_after_grace(how: str = "", **_: Any) -> None:
    """SIGTERM (warm shutdown): the running task has ``shutdown_grace_s`` to finish, then is
    interrupted (``HandBack``) and requeued. (Celery's soft shutdown is the cold path's wait and
    sleeps in the main thread — with the solo pool, the thread running the task.)"""
    if how == "Warm" and RUNNING.is_set():
        signal.signal(signal.SIGALRM, interrupt_task)
        signal.setitimer(signal.ITIMER_REAL, max(get_settings().shutdown_grace_s, 0.001))


def interrupt_task(signum: int, frame: object) -> None:
    if RUNNING.is_set():
        log.warning("the task outlived the shutdown grace of %.0f s: handing it back", get_settings().shutdown_grace_s)
        raise HandBack


def send(messages: Iterable[Message]) -> None:
    """What a task's step returned (its transaction has committed)."""
    sender().send(messages)


def sender() -> CelerySender:
    """The workers' sender, for steps that send inside their transaction (dispatching)."""
    return CelerySender(worker_app())


HEARTBEAT = threading.Event()  # set when the worker stops
BEATING: list[threading.Thread] = []  # the heartbeat thread, once started


@worker_ready.connect
def serve_or_exit(sender: Any = None, **_: Any) -> None:
    """Before the first message (the event loop has not polled the broker yet): a worker loads what
    its queues need (``shared.readiness.prepare``: a GPU lane's device and model, ``cpu``'s
    embedder); one that cannot exits with ``EXIT_CANNOT_SERVE``, having taken nothing (a
    SystemExit passes Celery's signal dispatch, and the worker stops with its code)."""
    from shared.readiness import EXIT_CANNOT_SERVE, prepare

    start = time.perf_counter()
    try:
        prepare(get_settings(), queue_names(sender))
    except Exception as exc:
        log.critical("this worker cannot serve, exiting before it takes a message: %s", exc)
        raise SystemExit(EXIT_CANNOT_SERVE) from exc
    log.info("ready to serve after %.1f s of loading", time.perf_counter() - start)


@worker_ready.connect
def start_heartbeat(sender: Any = None, **_: Any) -> None:
    """A worker process (not the beat) writes that it is alive every few seconds (``shared.liveness``),
    and its readiness file with it."""
    BEATING.append(keep_alive(get_settings(), ",".join(sorted(queue_names(sender))), HEARTBEAT))


def leave() -> None:
    """Stop beating; this worker's row and readiness file are gone when it returns (its claims are free)."""
    HEARTBEAT.set()
    for thread in BEATING:
        thread.join(timeout=10)  # it finishes a beat in progress, then forgets this worker


@worker_ready.connect
def warm_up_generator(sender: Any = None, **_: Any) -> None:
    """A GPU-queue worker with ``compile_generator`` compiles its model's batch shapes before its
    first task (``shared.backends.compiled.warm_up``); the heartbeat already runs meanwhile."""
    if GPU_LANES & queue_names(sender):
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
    leave()


SENT_AT = "smoothguard_sent_at"  # a message header: when it was sent (epoch seconds), for the queue wait
_log_context: dict[str, object] = {}  # task id → its log context's token


@worker_init.connect
def observe_worker(**_: Any) -> None:
    """A worker (not the beat) serves its metrics on ``metrics_port`` and, when tracing is on, runs
    every task in a span continuing its sender's trace (OpenTelemetry's Celery instrumentation: a
    solo or threads pool runs tasks in this process, so setting up here is after any fork)."""
    settings = get_settings()
    metrics.serve(settings.metrics_port)
    if tracing.configure(settings, "smoothguard-worker"):
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()


@after_setup_logger.connect
@after_setup_task_logger.connect
def log_format(logger: logging.Logger | None = None, **_: Any) -> None:
    """Celery's loggers write in the settings' ``log_format``."""
    if logger is not None:
        logs.adopt(logger, get_settings())


@before_task_publish.connect
def stamp_message(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Every message's send time, and the sender's trace context (in a worker the instrumentation
    replaces it by its send span's)."""
    if headers is not None:
        headers[SENT_AT] = time.time()
        tracing.inject(headers)


@task_prerun.connect
def task_started(task_id: str = "", task: Any = None, args: Any = (), **_: Any) -> None:
    """The task's ids (and its job's or audit's tenant) on its log lines; its queue wait and clock."""
    settings = get_settings()
    owners = settings.log_format == "json" or tracing.enabled()
    ids = task_ids(settings.database_url, task.name, args or (), owners=owners)
    _log_context[task_id] = logs.bind(task=task.name, task_id=task_id, **ids)
    metrics.task_started(task_id, task.name, getattr(task.request, SENT_AT, None))


@task_postrun.connect
def task_finished(task_id: str = "", task: Any = None, state: str | None = None, **_: Any) -> None:
    """The task's run time by outcome; its ids on its span (still the current one: connected
    before the instrumentation's, this runs first); one log line with its duration."""
    outcome = (state or "unknown").lower()
    seconds = metrics.task_finished(task_id, task.name, outcome)
    tracing.annotate(**logs.context())
    log.info("task %s %s", task.name, outcome, extra={"outcome": outcome, "duration_s": seconds and round(seconds, 3)})
    if (token := _log_context.pop(task_id, None)) is not None:
        logs.unbind(token)
