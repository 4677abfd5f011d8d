"""Throughput of the whole service on the embedded stack (PostgreSQL, Redis, S3, the API and the
GPU/CPU/webhook workers of ``smoothguard up``, all on this machine, bundled demo model), one stack per
run; a run is ``BATCHING:THREADS``: rounds and votes batched across jobs
(``SMOOTHGUARD_BATCH_ACROSS_JOBS``) ``on`` or ``off``, and each torch worker's threads
(``SMOOTHGUARD_TORCH_THREADS``): ``0`` the launcher's share of the cores, ``all`` every core (as
before that share existed), or N. The default compares before (``off:all``) with after (``on:0``):

1. one job alone (median of ``--alone`` jobs submitted one after another, models warm);
2. a burst: ``--burst`` jobs submitted at once (8 submitting threads), wall time until all finished,
   against ``--burst`` × one job alone, and where the CPU went (milliseconds per job of each process);
3. a closed loop: ``--clients`` clients, each submitting a job and polling it until it finished,
   for ``--loop-jobs`` jobs in all: defended jobs per second.

    .venv/bin/python bench/bench_throughput.py [--burst 48] [--clients 16] [--loop-jobs 96] [--runs off:all,on:0]

(``--runs off:all,off:0,on:0`` separates the threads' effect from batching's.) The API's rate limit
is off for the run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from load import CpuMeter, run_clients

from shared.config import DEMO_IMAGE
from shared.tools.commands import start_all
from shared.tools.launcher import Stack, dev_key, thread_share, usable_cores
from shared.tools.servers import free_port

PROMPT = "What colour is the circle?"
IMAGE = DEMO_IMAGE.read_bytes()


def submit(api: httpx.Client, seed: int) -> str:
    r = api.post("/v1/jobs", files={"file": ("demo.png", IMAGE)}, data={"prompt": PROMPT, "seed": str(seed)})
    r.raise_for_status()
    return r.json()["id"]


def wait(api: httpx.Client, job_id: str, poll_s: float = 0.02) -> dict:
    while (job := api.get(f"/v1/jobs/{job_id}").json())["finished_at"] is None:
        time.sleep(poll_s)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
    return job


def one_alone(api: httpx.Client, jobs: int) -> float:
    """Median seconds from submit to finished, one job at a time."""
    times = []
    for i in range(jobs):
        t0 = time.perf_counter()
        wait(api, submit(api, 10_000 + i))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def burst(api: httpx.Client, jobs: int, meter: CpuMeter) -> tuple[float, dict[str, float]]:
    """Seconds until ``jobs`` submitted at once all finished, and the CPU milliseconds per job that
    each process of the stack spent meanwhile."""
    before = meter.read()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: submit(api, 20_000 + i), range(jobs)))
    for job_id in ids:
        wait(api, job_id, poll_s=0.1)
    return time.perf_counter() - t0, meter.per(before, jobs)


def closed_loop(url: str, key: str, clients: int, jobs: int) -> float:
    """Defended jobs per second with ``clients`` each waiting for its job before the next."""
    counter, lock = iter(range(jobs)), threading.Lock()

    def client(_: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as api:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                wait(api, submit(api, 30_000 + i), poll_s=0.05)

    return jobs / run_clients(client, clients)


def measure(run: str, args: argparse.Namespace) -> dict:
    batching, _, threads = run.partition(":")
    threads = str(usable_cores()) if threads == "all" else threads or "0"
    stack = Stack(Path(tempfile.mkdtemp(prefix="sg-throughput-")))
    try:
        env = {
            "SMOOTHGUARD_BATCH_ACROSS_JOBS": "true" if batching == "on" else "false",
            "SMOOTHGUARD_TORCH_THREADS": threads,
            "SMOOTHGUARD_RATE_LIMIT": "0",
        }
        url = start_all(stack, "127.0.0.1", free_port(), None, **env)
        key = dev_key(stack.env["SMOOTHGUARD_DATABASE_URL"])
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as api:
            one_alone(api, 2)  # warm: the models load on the first job
            alone_s = one_alone(api, args.alone)
            burst_s, burst_cpu = burst(api, args.burst, CpuMeter(stack))
        loop = closed_loop(url, key, args.clients, args.loop_jobs)
        return {
            "run": run,
            "torch_threads_per_worker": int(threads) or thread_share(),
            "one_job_alone_ms": round(alone_s * 1e3, 1),
            f"burst_{args.burst}_s": round(burst_s, 2),
            "burst_over_sequential": round(burst_s / (args.burst * alone_s), 3),
            "burst_cpu_ms_per_job": burst_cpu,
            f"jobs_per_s_{args.clients}_clients": round(loop, 2),
        }
    finally:
        stack.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alone", type=int, default=10, help="jobs one at a time (the median is reported)")
    ap.add_argument("--burst", type=int, default=48)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--loop-jobs", type=int, default=96)
    ap.add_argument("--runs", default="off:all,on:0", help="comma-separated BATCHING:THREADS (on|off : 0|all|N)")
    args = ap.parse_args()
    results = [measure(run, args) for run in args.runs.split(",")]
    report: dict = {"cores": usable_cores(), "runs": results}
    if len(results) >= 2:
        off, on = results[0], results[-1]
        report["first_vs_last"] = f"{off['run']} → {on['run']}"
        report["burst_speedup"] = round(off[f"burst_{args.burst}_s"] / on[f"burst_{args.burst}_s"], 2)
        key = f"jobs_per_s_{args.clients}_clients"
        report["jobs_per_s_speedup"] = round(on[key] / off[key], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
