"""A worker's own Prometheus metrics, served by the worker process on ``metrics_port`` (its GPU and
CPU queues run in a solo pool, webhooks in threads: the process that serves is the one that runs
the tasks). Task time and queue wait by task, rounds, generations and tokens by model, jobs'
submit-to-finish time, and the CUDA memory of a process that has torch with CUDA loaded.

Rates are Prometheus's: ``rate(smoothguard_generated_tokens_total[1m])`` is tokens per second."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry()  # what a worker's port answers (not prometheus_client's global one)
SECONDS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

TASK_SECONDS = Histogram(
    "smoothguard_task_seconds",
    "Task run time by task and outcome",
    ["task", "outcome"],
    buckets=SECONDS,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "smoothguard_queue_wait_seconds",
    "Time from a task's send to its start, by task",
    ["task"],
    buckets=SECONDS,
    registry=REGISTRY,
)
ROUNDS = Counter("smoothguard_rounds", "Rounds generated and recorded, by model", ["model"], registry=REGISTRY)
GENERATIONS = Counter("smoothguard_generations", "Candidates generated, by model", ["model"], registry=REGISTRY)
TOKENS = Counter("smoothguard_generated_tokens", "Tokens generated, by model", ["model"], registry=REGISTRY)
JOB_SECONDS = Histogram(
    "smoothguard_job_seconds",
    "Jobs' time from submit to finish, by final status (observed by the worker that finished them)",
    ["status"],
    buckets=SECONDS,
    registry=REGISTRY,
)


class GpuMemory(Collector):
    """``smoothguard_gpu_memory_bytes{device, kind}`` (allocated, reserved) of each CUDA device, in
    a process that has loaded torch and initialised CUDA (never imports torch itself)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return
        family = GaugeMetricFamily("smoothguard_gpu_memory_bytes", "CUDA memory by device", labels=["device", "kind"])
        for device in range(torch.cuda.device_count()):
            family.add_metric([str(device), "allocated"], torch.cuda.memory_allocated(device))
            family.add_metric([str(device), "reserved"], torch.cuda.memory_reserved(device))
        yield family


REGISTRY.register(GpuMemory())
_started: dict[str, float] = {}  # task id → start (perf_counter)


def serve(port: int) -> None:
    """This process's metrics on ``port`` (all interfaces), from a daemon thread; nothing for 0."""
    if port > 0:
        start_http_server(port, registry=REGISTRY)


def task_started(task_id: str, task: str, sent_at: float | None) -> None:
    """A task starts: its queue wait (when its sender stamped the send time) and its clock."""
    if sent_at is not None:
        QUEUE_WAIT.labels(task).observe(max(0.0, time.time() - sent_at))
    _started[task_id] = time.perf_counter()


def task_finished(task_id: str, task: str, outcome: str) -> float | None:
    """A task ended (``outcome``: success, failure, retry, …); its run time, if it was started here."""
    start = _started.pop(task_id, None)
    if start is None:
        return None
    seconds = time.perf_counter() - start
    TASK_SECONDS.labels(task, outcome).observe(seconds)
    return seconds
