"""The client half of ``smoothguard demo``: what a user's integration does over REST.

Register a webhook endpoint (a local receiver), submit a defense job on an image with an
Idempotency-Key, poll it to the end, print the result and the webhook with its verified signature."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx

from shared.config import DEMO_IMAGE
from shared.receiver import Receiver


def run_demo(url: str, key: str, prompt: str, image: Path | None = None, timeout: float = 300.0) -> int:
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    with Receiver() as receiver:
        endpoint = api.post("/v1/webhooks", json={"url": receiver.url}).raise_for_status().json()
        receiver.secret = endpoint["secret"]
        path = image or DEMO_IMAGE
        started = time.perf_counter()
        submitted = api.post("/v1/jobs", headers={"Idempotency-Key": str(uuid.uuid4())},
                             files={"file": (path.name, path.read_bytes())},
                             data={"prompt": prompt, "callback_url": receiver.url}).raise_for_status()  # fmt: skip
        job_id = submitted.json()["id"]
        print(f"POST /v1/jobs → {submitted.status_code}, Location: {submitted.headers['location']}", flush=True)
        job = poll(api, job_id, started + timeout)
        elapsed = time.perf_counter() - started
        (hook,) = receiver.wait(1, timeout=60)
    samples = api.get(f"/v1/jobs/{job_id}/samples").json()
    print(summary(job, samples, elapsed, prompt, path.name))
    print(f"webhook: POST {receiver.url} webhook-id={hook.headers['webhook-id']} "
          f"signature {'VERIFIED' if hook.verified else 'INVALID'} with the endpoint's whsec_ secret")  # fmt: skip
    print("payload: " + json.dumps(hook.json, indent=None))
    return 0 if job["status"] in ("succeeded", "abstained") and hook.verified else 1


def poll(api: httpx.Client, job_id: str, deadline: float) -> dict:
    while True:
        job = api.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["finished_at"] is not None:
            return job
        if time.perf_counter() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']}")
        time.sleep(0.2)


def summary(job: dict, samples: list[dict], elapsed: float, prompt: str, image: str) -> str:
    c, t = job["consensus"] or {}, job["timings"] or {}
    answers = ", ".join(f"{s['index']}:{s['text']!r}" for s in samples[:11])
    return "\n".join([
        f"job {job['id']}: {job['status']} in {elapsed:.1f} s (submit → result over REST)",
        f"  {image}: {prompt!r} → answer {job['answer']!r}",
        f"  consensus {c.get('count')}/{c.get('total')} noisy samples, lower bound {c.get('lower_bound', 0):.3f} "
        f"at alpha={c.get('alpha')}; abstained: {job['abstained']}",
        f"  samples spent {job['samples_spent']}, σ={job['params']['sigma']} ({job['params']['noise_space']}), "
        f"generation {t.get('generation_ms', 0):.0f} ms, embedding {t.get('embedding_ms', 0):.0f} ms, "
        f"clustering {t.get('clustering_ms', 0):.1f} ms",
        f"  candidates (index:answer; 0 is the clean input): {answers}",
    ])  # fmt: skip
