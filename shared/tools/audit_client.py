"""The REST client behind ``smoothguard audit`` and the demo: submit, follow with a progress
bar, fetch the report, print the headline table."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

FINISHED = ("succeeded", "failed", "cancelled")


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def check(response: httpx.Response) -> httpx.Response:
    """Raise with the API's problem detail, not only the status line."""
    if response.is_error:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise RuntimeError(f"{response.request.method} {response.request.url.path} → {response.status_code}: {detail}")
    return response


def submit(api: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    return check(api.post("/v1/audits", json=spec)).json()


def bar(audit: dict[str, Any], width: int = 30) -> str:
    p = audit["progress"]
    filled = int(round(p["fraction"] * width))
    eta = f"ETA {p['eta_s']:.0f} s" if p.get("eta_s") is not None else "ETA –"
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {p['fraction'] * 100:5.1f}%  items {p['done']}/{p['total']}"
        f"  attacked {p['attacked']}  defense jobs {p['jobs_done']}/{p['jobs_total']}  {eta}  ({audit['status']})"
    )


def follow(
    api: httpx.Client, audit_id: str, *, out: IO[str] = sys.stderr, timeout: float = 3600, interval: float = 0.5
) -> dict[str, Any]:
    """Poll until the audit finishes, drawing a progress bar (in place on a terminal; elsewhere a
    line when an item finishes or every 5 s)."""
    deadline, last, tty = time.monotonic() + timeout, (-1, 0.0), out.isatty()
    while True:
        audit = check(api.get(f"/v1/audits/{audit_id}")).json()
        done, now = audit["progress"]["done"], time.monotonic()
        if tty or done != last[0] or now - last[1] > 5 or audit["status"] in FINISHED:
            out.write(("\r" + bar(audit)) if tty else bar(audit) + "\n")
            out.flush()
            last = (done, now)
        if audit["status"] in FINISHED:
            if tty:
                out.write("\n")
            return audit
        if time.monotonic() > deadline:
            raise TimeoutError(f"audit {audit_id} still {audit['status']} after {timeout:.0f} s")
        time.sleep(interval)


def download(api: httpx.Client, audit_id: str, fmt: str, dest: Path) -> Path:
    dest.write_bytes(check(api.get(f"/v1/audits/{audit_id}/report", params={"format": fmt})).content)
    return dest


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def table(summary: dict[str, Any], noise_space: str) -> str:
    """The headline: per σ (undefended first) clean accuracy, ASR per attack, abstain rate, samples."""
    attacks = summary["attacks"]
    head = ["defense", "clean acc", *[f"ASR {a} (not abstained)" for a in attacks], "abstain", "samples/answer", "goal"]
    body = []
    for row in summary["headline"]:
        label = "undefended" if row["sigma"] is None else f"σ={row['sigma']:g}"
        goal = {True: "met", False: "missed", None: "–"}[row.get("meets_goal")]
        asr = [f"{_pct(row['asr'][a])} ({_pct(row['committed_asr'][a])})" for a in attacks]
        body.append(
            [
                label,
                _pct(row["clean_accuracy"]),
                *asr,
                _pct(row["abstain_rate"]),
                f"{row['mean_samples_spent'] or 0:.1f}",
                goal,
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
    spent = sum(g["total_samples_spent"] for g in summary["groups"])
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"{summary['n_items']} items ({summary['n_eligible']} clean-correct, over which ASR is counted); "
        f"noise space: {noise_space}; generations spent in all: {spent}"
    )
    return "\n".join(lines)
