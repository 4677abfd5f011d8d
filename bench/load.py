"""What the service benchmarks share (imported by the scripts beside it): client threads run
together and timed, percentiles, and the CPU time each process of a stack spent."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.tools.launcher import Stack


def run_clients(client: Callable[[int], None], clients: int) -> float:
    """``client(0)`` … ``client(clients - 1)`` in threads at once; the wall seconds until all returned."""
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def cpu_seconds(pid: int, descendants: bool = True) -> float:
    """User + system CPU seconds of ``pid`` (all its threads) and, with ``descendants``, of its live
    descendants and the children it has reaped."""
    import psutil

    root = psutil.Process(pid)
    if not descendants:
        t = root.cpu_times()
        return t.user + t.system
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class CpuMeter:
    """Where the CPU time goes during a load: seconds per process of the stack — each child it
    spawned (the API's processes, each worker) with its descendants, PostgreSQL with its backends,
    Redis, S3 — and this process alone (the benchmark's clients)."""

    def __init__(self, stack: Stack):
        assert stack.postgres and stack.redis and stack.s3 and stack.redis.process and stack.s3.process
        postmaster = int((stack.postgres.data / "postmaster.pid").read_text().split()[0])
        self.pids = {name: proc.pid for name, proc in stack.children.items()} | {
            "postgres": postmaster,
            "redis": stack.redis.process.pid,
            "s3": stack.s3.process.pid,
            "clients": os.getpid(),
        }

    def read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid, descendants=name != "clients") for name, pid in self.pids.items()}

    def per(self, before: dict[str, float], count: int) -> dict[str, float]:
        """CPU milliseconds per unit of work (``count`` of them) since ``before`` (a ``read()``)."""
        return {name: round((seconds - before[name]) * 1e3 / count, 2) for name, seconds in self.read().items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
