"""The client half of ``smoothguard demo``: a robustness audit as a user's integration runs it over REST.

Register a webhook endpoint (a local receiver), submit an audit of the bundled demo model on the
synthetic shapes set — PGD and EOT-PGD (L∞, ε = 16/255), SmoothGuard at σ ∈ {0.05, 0.1, 0.15, 0.2}
in the paper's noise space (normalised ``pixel_values``) — follow its progress, print the headline
table, save the HTML report and check the completion webhook's signature."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from shared.tools.audit_client import client, download, follow, submit, table
from shared.tools.receiver import Receiver

DEMO_SIGMAS = [0.05, 0.1, 0.15, 0.2]
DEMO_SEED = 20261126  # a set the demo model never saw (it trained on seeds 1000 and 999)


def demo_spec(images: int, steps: int, stop_loss: float | None, callback_url: str | None) -> dict[str, Any]:
    attack = {"norm": "linf", "eps": 16 / 255, "steps": steps, "targeted": True, "stop_loss": stop_loss}
    return {
        "dataset": {"format": "shapes", "seed": DEMO_SEED, "count": images},
        "attacks": [{"name": "pgd", **attack}, {"name": "eot", **attack, "eot_samples": 8}],
        "defense": {"sigmas": DEMO_SIGMAS, "num_samples": 10, "noise_space": "normalized", "max_new_tokens": 8},
        "chunk_size": 8,
        "concurrency": 2,
        "callback_url": callback_url,
    }


def run_demo(
    url: str, key: str, *, images: int, steps: int, stop_loss: float | None, out: Path, timeout: float = 3600
) -> int:
    api = client(url, key)
    with Receiver() as receiver:
        endpoint = api.post("/v1/webhooks", json={"url": receiver.url}).raise_for_status().json()
        receiver.secret = endpoint["secret"]
        started = time.perf_counter()
        audit = submit(api, demo_spec(images, steps, stop_loss, receiver.url))
        print(f"POST /v1/audits → {audit['status']}, Location: /v1/audits/{audit['id']}", flush=True)
        audit = follow(api, audit["id"], timeout=timeout)
        elapsed = time.perf_counter() - started
        hooks = receiver.wait(1, timeout=60)
    if audit["status"] != "succeeded":
        print(f"audit {audit['id']} {audit['status']}: {audit.get('error')}")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for fmt, name in (("html", "report.html"), ("json", "report.json"), ("csv", "items.csv")):
        download(api, audit["id"], fmt, out / name)
    print(
        f"audit {audit['id']} {audit['status']} in {elapsed:.0f} s: {audit['progress']['total']} items of the "
        f"synthetic shapes set, attacks PGD and EOT-PGD (L∞, ε=16/255, {steps} steps, targeted"
        f"{f', stopped at loss {stop_loss}' if stop_loss else ''}), "
        f"SmoothGuard with {10} noisy samples + the clean one"
    )
    print(table(audit["summary"], "normalized (σ in units of the processor's mean/std-normalised pixel_values)"))
    print(f"report: {(out / 'report.html').resolve()} (also report.json, items.csv)")
    hook = hooks[0]
    print(
        f"webhook: POST {receiver.url} webhook-id={hook.headers['webhook-id']} "
        f"signature {'VERIFIED' if hook.verified else 'INVALID'}; payload: {json.dumps(hook.json['data'])}"
    )
    return 0 if hook.verified else 1
