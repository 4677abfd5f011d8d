"""Service benchmark on the embedded stack (PostgreSQL, Redis, S3, uvicorn, Celery workers, all
on this machine):

1. API submit: ``--clients`` concurrent clients POST ``--requests`` jobs in all, no workers
   running, as multipart with the demo image (the same bytes each time: stored once), as
   multipart with a new image each time (each one stored in S3), and as JSON (the demo image
   uploaded once to ``/v1/media``, jobs naming its ``media_id``): for each, requests/s, p50 and
   p99 latency, errors, and the CPU milliseconds per submit of each component (API, PostgreSQL,
   Redis, S3, the clients). ``--api-workers`` uvicorn processes serve them (default: the ``api``
   command's, one per core). ``--rounds``: part 1 again, each time for a new tenant (this
   machine's speed drifts from minute to minute: compare rounds of one run).
2. Service overhead around one job: jobs submitted one at a time with the GPU/CPU workers up
   (models warm); overhead = (finished_at − created_at) − (generation + embedding + clustering),
   i.e. the queue hops, database and S3 round trips, decoding and noise. p50 and p90.
   ``--jobs 0`` skips it.

    .venv/bin/python bench/bench_service.py [--clients 8] [--requests 400] [--jobs 30] [--api-workers N]
        [--rounds 1]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
from load import CpuMeter, percentile, run_clients

from shared.config import DEMO_IMAGE
from shared.tools.commands import wait_ready
from shared.tools.launcher import Stack
from shared.tools.servers import free_port


def tenant_key(database_url: str) -> str:
    """A key of a new tenant."""
    from shared.db import session_scope
    from shared.tenants import create_api_key, create_tenant

    with session_scope(database_url) as s:
        return create_api_key(s, tenant=create_tenant(s, name=f"bench-{uuid.uuid4().hex[:8]}"))[1]


PROMPT = "What colour is the circle?"


def multipart_submit(api: httpx.Client, image: bytes, i: int) -> httpx.Response:
    return api.post("/v1/jobs", files={"file": ("demo.png", image)}, data={"prompt": PROMPT, "seed": str(i)})


def new_images(count: int) -> list[bytes]:
    """``count`` distinct small PNGs (each a new upload for the service)."""
    from PIL import Image

    images = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (i % 256, i // 256 % 256, 255 - i % 256)).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def json_submit(api: httpx.Client, media_id: str, i: int) -> httpx.Response:
    return api.post("/v1/jobs", json={"media_id": media_id, "prompt": PROMPT, "seed": i})


def upload_media(url: str, key: str, image: bytes) -> str:
    """The demo image as the tenant's media (for JSON submits); its id."""
    headers = {"Authorization": f"Bearer {key}"}
    r = httpx.post(f"{url}/v1/media", headers=headers, files={"file": ("demo.png", image)}, timeout=30)
    r.raise_for_status()
    return str(r.json()["id"])


def submit_load(
    url: str,
    key: str,
    clients: int,
    requests: int,
    send: Callable[[httpx.Client, int], httpx.Response],
    meter: CpuMeter | None = None,
) -> dict:
    """``clients`` threads, each with its own keep-alive connection, ``requests // clients`` submits each."""
    latencies, errors = [], []
    per_client = requests // clients

    def client(_: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
            for i in range(per_client):
                t0 = time.perf_counter()
                try:
                    r = send(api, i)
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                latencies.append((time.perf_counter() - t0) * 1e3)
                if status != 202:
                    errors.append(f"{status}: {r.text[:200] if isinstance(status, int) else ''}")

    before = meter.read() if meter else {}
    wall = run_clients(client, clients)
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:3],
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    } | ({"cpu_ms_per_submit": meter.per(before, len(latencies))} if meter else {})


def submit_both(url: str, key: str, clients: int, requests: int, meter: CpuMeter) -> dict:
    """Part 1: a short warm-up, then multipart submits of one image, of new images, then JSON submits;
    for each, the CPU milliseconds per submit that each component of the stack spent."""
    image = DEMO_IMAGE.read_bytes()
    submit_load(url, key, clients, 2 * clients, lambda api, i: multipart_submit(api, image, 10**6 + i))  # warm-up
    report = {
        "multipart": submit_load(url, key, clients, requests, lambda api, i: multipart_submit(api, image, i), meter)
    }
    images = new_images(requests)
    per_client = requests // clients
    counter = itertools.count()  # each client's i runs 0..per_client: a shared counter hands out the images
    report["multipart_new_images"] = submit_load(
        url, key, clients, per_client * clients, lambda api, i: multipart_submit(api, images[next(counter)], i), meter
    )
    media_id = upload_media(url, key, image)
    report["json"] = submit_load(url, key, clients, requests, lambda api, i: json_submit(api, media_id, i), meter)
    return report


def job_overhead(url: str, key: str, jobs: int) -> dict:
    overheads, totals, compute = [], [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as api:
        for i in range(jobs + 2):  # the first two warm the models up and are not counted
            job_id = api.post(
                "/v1/jobs",
                files={"file": ("demo.png", DEMO_IMAGE.read_bytes())},
                data={"prompt": PROMPT, "seed": str(1000 + i)},
            ).json()["id"]
            while (job := api.get(f"/v1/jobs/{job_id}").json())["finished_at"] is None:
                time.sleep(0.01)
            if i < 2:
                continue
            total = datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["created_at"])
            work = sum(job["timings"].values())
            totals.append(total.total_seconds() * 1e3)
            compute.append(work)
            overheads.append(totals[-1] - work)
    return {
        "jobs": jobs,
        "total_p50_ms": round(statistics.median(totals), 1),
        "generation_embedding_clustering_p50_ms": round(statistics.median(compute), 1),
        "overhead_p50_ms": round(statistics.median(overheads), 1),
        "overhead_p90_ms": round(percentile(overheads, 90), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=400, help="submits per kind (multipart, JSON)")
    ap.add_argument("--jobs", type=int, default=30, help="part 2's jobs; 0 skips part 2")
    ap.add_argument("--api-workers", type=int, default=None, help="uvicorn processes (default: the api command's)")
    ap.add_argument("--rounds", type=int, default=1, help="part 1 this many times (a new tenant each time)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="smoothguard-bench-"))
    stack = Stack(root).start()
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        workers = [] if args.api_workers is None else ["--workers", str(args.api_workers)]
        # no rate limit: this measures what the API can take
        stack.spawn(
            "api",
            ["api", "--port", str(port), *workers],
            env={"SMOOTHGUARD_DEVICE": "cpu", "SMOOTHGUARD_RATE_LIMIT": "0"},
        )
        wait_ready(url, stack)
        database = stack.env["SMOOTHGUARD_DATABASE_URL"]
        meter = CpuMeter(stack)
        # each round on a tenant of its own: each starts with no backlog of unfinished jobs
        rounds = [
            submit_both(url, tenant_key(database), args.clients, args.requests, meter) for _ in range(args.rounds)
        ]
        report: dict = {"submit": rounds[0] if args.rounds == 1 else rounds}
        if args.jobs > 0:
            report["one_job"] = one_job(stack, url, args.jobs)
        print(json.dumps(report, indent=2))
    finally:
        stack.stop()


def one_job(stack: Stack, url: str, jobs: int) -> dict:
    """Part 2 on the same stack: the workers started, phase 1's messages dropped."""
    stack.spawn("gpu", ["worker", "gpu"], env={"SMOOTHGUARD_DEVICE": "cpu"})
    stack.spawn("cpu", ["worker", "cpu"])
    import redis

    redis.Redis.from_url(stack.env["SMOOTHGUARD_REDIS_URL"]).delete("gpu")  # drop phase 1's dispatched jobs
    # another tenant: phase 1's backlog waits in the database for its own tenant's slots
    return job_overhead(url, tenant_key(stack.env["SMOOTHGUARD_DATABASE_URL"]), jobs)


if __name__ == "__main__":
    main()
