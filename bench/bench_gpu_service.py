"""The whole service on one machine, generation compiled: the embedded stack (PostgreSQL, Redis,
S3) and ``smoothguard up``'s processes (API, GPU/CPU/webhook workers) serving ``--model`` on
``--device``, with ``SMOOTHGUARD_COMPILE_GENERATOR`` on (``--no-compile``: off):

1. start-up: until the first defended job finished (the GPU worker loads the model and compiles
   every batch bucket up to ``--max-batch-size`` before it takes work);
2. one at a time: ``--alone`` defended requests (``num_samples`` 10 + the clean input,
   ``max_new_tokens`` 128 — a random model never stops early, so every candidate generates all of
   them), each submitted once the previous finished: p50/p90 latency (submit → seen finished) and
   requests/s;
3. concurrent: ``--concurrent`` clients each submitting ``--per-client`` such requests and waiting
   for each (rounds batched across jobs, up to ``--max-batch-size`` candidates a generate):
   requests/s and its ratio to one at a time.

One JSON on stdout. The tenant may keep ``--concurrent`` jobs on the GPU queue
(``SMOOTHGUARD_TENANT_MAX_DISPATCHED``) and has no rate limit: this measures the workers.

    python bench/bench_gpu.py --save /tmp/llava-7b-shape                   # once: the random 7B-shaped checkpoint
    python bench/bench_gpu_service.py --model /tmp/llava-7b-shape          # ~6 min on one H100/H200 (estimate)
    .venv/bin/python bench/bench_gpu_service.py --model shared/assets/demo-llava --device cpu \\
        --alone 3 --concurrent 4 --per-client 1 --max-batch-size 16 --buckets 16   # smoke check
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load import percentile, run_clients

from shared.config import DEMO_IMAGE  # noqa: E402
from shared.tools.commands import start_all  # noqa: E402
from shared.tools.launcher import Stack, dev_key  # noqa: E402
from shared.tools.servers import free_port  # noqa: E402

PROMPT = "What colour is the circle?"
IMAGE = DEMO_IMAGE.read_bytes()


class Deadline:
    """The run's time limit: every wait gives up at it, and what was measured is still reported."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()


def defended_job(api: httpx.Client, seed: int, new_tokens: int) -> str:
    """One defended request: 10 noisy candidates + the clean input, ``new_tokens`` each; its id."""
    fields = {"prompt": PROMPT, "seed": str(seed), "num_samples": "10", "max_new_tokens": str(new_tokens)}
    r = api.post("/v1/jobs", files={"file": ("demo.png", IMAGE)}, data=fields)
    r.raise_for_status()
    return str(r.json()["id"])


def wait(api: httpx.Client, job_id: str, deadline: Deadline) -> dict[str, Any]:
    """The job once finished (succeeded, else an error); ``TimeoutError`` at the deadline."""
    while (job := api.get(f"/v1/jobs/{job_id}").json())["finished_at"] is None:
        if deadline.left() <= 0:
            raise TimeoutError(f"job {job_id} not finished by the deadline")
        time.sleep(0.02)
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
    return job


def run_job(api: httpx.Client, seed: int, new_tokens: int, deadline: Deadline) -> tuple[float, dict[str, Any]]:
    """Seconds from submit to seen finished, and the job."""
    t0 = time.perf_counter()
    job = wait(api, defended_job(api, seed, new_tokens), deadline)
    return time.perf_counter() - t0, job


def server_ms(job: dict[str, Any]) -> float:
    return (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
    ).total_seconds() * 1e3


def one_at_a_time(api: httpx.Client, jobs: int, new_tokens: int, deadline: Deadline) -> dict[str, Any]:
    runs = [run_job(api, 100 + i, new_tokens, deadline) for i in range(jobs)]
    latencies = [s for s, _ in runs]
    timings = [job["timings"] for _, job in runs]
    return {
        "jobs": jobs,
        "p50_ms": round(statistics.median(latencies) * 1e3, 1),
        "p90_ms": round(percentile(latencies, 90) * 1e3, 1),
        "server_p50_ms": round(statistics.median(server_ms(job) for _, job in runs), 1),
        "timings_p50_ms": {k: round(statistics.median(t[k] for t in timings), 1) for k in timings[0]},
        "requests_per_s": round(jobs / sum(latencies), 3),
    }


def concurrent(url: str, key: str, clients: int, per_client: int, new_tokens: int, deadline: Deadline) -> dict:
    """``clients`` threads, each submitting a request and waiting for it, ``per_client`` times."""
    latencies: list[float] = []
    errors: list[str] = []

    def client(c: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
            for i in range(per_client):
                try:
                    latencies.append(run_job(api, 10_000 + c * per_client + i, new_tokens, deadline)[0])
                except Exception as exc:  # counted, not hidden
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

    wall = run_clients(client, clients)
    return {
        "clients": clients,
        "jobs": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:3],
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 3),
        "p50_ms": round(statistics.median(latencies) * 1e3, 1) if latencies else None,
    }


def service_env(args: argparse.Namespace) -> dict[str, str]:
    env = {
        "SMOOTHGUARD_MODEL": str(Path(args.model).resolve()),
        "SMOOTHGUARD_DEVICE": args.device,
        "SMOOTHGUARD_COMPILE_GENERATOR": "0" if args.no_compile else "1",
        "SMOOTHGUARD_MAX_BATCH_SIZE": str(args.max_batch_size),
        "SMOOTHGUARD_TENANT_MAX_DISPATCHED": str(max(args.concurrent, 8)),
        "SMOOTHGUARD_RATE_LIMIT": "0",
    }
    return env | ({"SMOOTHGUARD_BATCH_BUCKETS": args.buckets} if args.buckets else {})


def measure(url: str, key: str, args: argparse.Namespace, deadline: Deadline, report: dict[str, Any]) -> None:
    """The three parts into ``report`` as each finishes."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        report["startup_to_first_result_s"] = round(run_job(api, 1, args.new_tokens, deadline)[0], 1)
        report["one_at_a_time"] = one_at_a_time(api, args.alone, args.new_tokens, deadline)
    report["concurrent"] = concurrent(url, key, args.concurrent, args.per_client, args.new_tokens, deadline)
    alone = report["one_at_a_time"]["requests_per_s"]
    report["concurrent_vs_one_at_a_time"] = round(report["concurrent"]["requests_per_s"] / alone, 2)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint folder (bench_gpu.py --save writes the 7B shape)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-compile", action="store_true", help="eager generation (the default service)")
    ap.add_argument("--max-batch-size", type=int, default=88, help="candidates per generate: 8 rounds of 11")
    ap.add_argument("--buckets", default="", help="SMOOTHGUARD_BATCH_BUCKETS (default: the settings')")
    ap.add_argument("--new-tokens", type=int, default=128, help="each job's max_new_tokens")
    ap.add_argument("--alone", type=int, default=5, help="requests one at a time")
    ap.add_argument("--concurrent", type=int, default=32, help="concurrent clients")
    ap.add_argument("--per-client", type=int, default=2, help="requests per concurrent client")
    ap.add_argument("--deadline-s", type=float, default=560, help="give up waiting after this many seconds in all")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    deadline = Deadline(args.deadline_s)
    report: dict[str, Any] = {"model": args.model, "device": args.device, "compiled": not args.no_compile}
    report |= {"max_batch_size": args.max_batch_size, "new_tokens": args.new_tokens}
    stack = Stack(Path(tempfile.mkdtemp(prefix="smoothguard-gpu-bench-")))
    try:
        url = start_all(stack, "127.0.0.1", free_port(), None, **service_env(args))
        measure(url, dev_key(stack.env["SMOOTHGUARD_DATABASE_URL"]), args, deadline, report)
    except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"[:300]
        report["logs"] = str(stack.root / "logs")
    finally:
        stack.stop()
    if "error" not in report:
        shutil.rmtree(stack.root, ignore_errors=True)  # its databases; kept with the logs after an error
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
