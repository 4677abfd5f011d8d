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


def upload_dataset(
    api: httpx.Client, name: str, data: bytes, fmt: str, timeout: float = 600, poll_s: float = 0.5
) -> dict[str, Any]:
    """Upload a benchmark archive and wait for the server's check: the ``ready`` dataset (its
    ``sha256`` is what an audit's ``dataset.archive`` names); ``RuntimeError`` with the reason
    when it is invalid."""
    dataset = check(api.post("/v1/datasets", files={"file": (name, data)}, data={"format": fmt})).json()
    deadline = time.monotonic() + timeout
    while dataset["status"] == "validating":
        if time.monotonic() > deadline:
            raise RuntimeError(f"dataset {dataset['id']} is still being checked after {timeout:g} s")
        time.sleep(poll_s)
        dataset = check(api.get(f"/v1/datasets/{dataset['id']}")).json()
    if dataset["status"] != "ready":
        raise RuntimeError(f"dataset {dataset['id']} is {dataset['status']}: {dataset['error']}")
    return dataset


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
    safety = bool(summary.get("has_safety"))  # over-refusal on the benign items, next to the safety items' ASR
    head = ["defense", "clean acc", *[f"ASR {a} (not abstained)" for a in attacks], "abstain", "samples/answer", "goal"]
    if safety:
        head.insert(-2, "over-refusal")
    body = []
    for row in summary["headline"]:
        label = "undefended" if row["sigma"] is None else f"σ={row['sigma']:g}"
        goal = {True: "met", False: "missed", None: "–"}[row.get("meets_goal")]
        asr = [f"{_pct(row['asr'][a])} ({_pct(row['committed_asr'][a])})" for a in attacks]
        cells = [label, _pct(row["clean_accuracy"]), *asr, _pct(row["abstain_rate"])]
        cells += [_pct(row.get("over_refusal"))] if safety else []
        body.append([*cells, f"{row['mean_samples_spent'] or 0:.1f}", goal])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
    spent = sum(g["total_samples_spent"] for g in summary["groups"])
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"{summary['n_items']} items ({summary['n_eligible']} clean-correct, over which ASR is counted); "
        f"noise space: {noise_space}; generations spent in all: {spent}"
    )
    judged = ", ".join(summary.get("goal_attacks", attacks))
    lines.append(
        f"goal: for {judged}, committed ASR ≤ ⅓ and ASR ≤ ½ of the undefended ASR; clean accuracy at most 2 points lower"
    )
    return "\n".join(lines)


# Cohen, Rosenfeld & Kolter (2019), Table 1 / Figure 7: certified accuracy of the smoothed
# ResNet-110 on CIFAR-10 (n = 100,000, α = 0.001), L2 radius in [0, 1] pixel units, per σ.
COHEN_CIFAR10: dict[float, dict[float, float]] = {
    0.25: {0.0: 0.75, 0.25: 0.60, 0.5: 0.43},
    0.5: {0.0: 0.65, 0.25: 0.55, 0.5: 0.41, 1.0: 0.22},
}


def _grid(cells: list[list[str]]) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(*cells, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def certified_accuracy_table(summary: dict[str, Any], reference: dict[float, dict[float, float]] | None = None) -> str:
    """Certified accuracy on the clean items against L2 radius, one row per σ, each followed by
    Cohen et al.'s CIFAR-10 row at that σ where there is one; "–" past what n draws can certify."""
    reference = COHEN_CIFAR10 if reference is None else reference
    cert = summary["certification"]
    radii = [float(r) for r in cert["radii"]]
    cells = [["σ", "certified accuracy of", "abstain", *[f"r={r:g}" for r in radii], "max r (n draws)"]]
    for row in cert["accuracy"]:
        points = {float(p["radius"]): p["accuracy"] for p in row["points"]}
        limit = row["max_radius"]
        cells.append(
            [
                f"{row['sigma']:g}",
                f"this model ({row['n']} clean items)",
                _pct(row["abstain_rate"]),
                *[_pct(points.get(r)) for r in radii],
                "–" if limit is None else f"{limit:.3g}",
            ]
        )
        ref = reference.get(float(row["sigma"]))
        if ref:
            cells.append(["", "Cohen et al., CIFAR-10", "", *[_pct(ref.get(r)) for r in radii], "(n=100,000)"])
    return "\n".join(_grid(cells))


def coverage_lines(summary: dict[str, Any]) -> str:
    """Per attack and σ: certified answers, how many certificates cover the perturbation (r ≥ ‖δ‖₂),
    the perturbation's mean L2 and the mean certified radius; L∞ rows say they are outside."""
    cells = [["attack", "threat model", "σ", "certified", "cover ‖δ‖₂", "mean ‖δ‖₂", "mean r", "what it is"]]
    for c in summary["certification"]["coverage"]:
        linf = c["norm"] == "linf"
        eps = "16/255" if linf and abs(c["eps"] - 16 / 255) < 1e-9 else f"{c['eps']:g}"
        cells.append(
            [
                c["variant"],
                f"{'L∞' if linf else 'L2'} ε={eps}",
                f"{c['sigma']:g}",
                f"{c['certified']}/{c['n']}",
                str(c["covered"]),
                "–" if c["mean_perturbation_l2"] is None else f"{c['mean_perturbation_l2']:.3g}",
                "–" if c["mean_certified_radius"] is None else f"{c['mean_certified_radius']:.3g}",
                "L∞ (outside what smoothing certifies)" if linf else "L2 (certified where covered)",
            ]
        )
    return "\n".join(_grid(cells))


def certificate_check(summary: dict[str, Any]) -> str:
    """The line that must read 0: committed wrong answers whose certificate covers the perturbation."""
    coverage = summary["certification"]["coverage"]
    covered = sum(c["covered"] for c in coverage)
    cert = summary["certification"]
    wrong, clean_too = cert["covered_wrong"], cert.get("covered_wrong_clean_too")
    line = f"committed wrong answers covered by a certificate: {wrong} of {covered} covered answers"
    if wrong and clean_too is not None:
        line += (
            f" ({clean_too} where the smoothed model certifies the same wrong answer on the clean image, as the "
            f"certificate says it must; {wrong - clean_too} contradicting a certificate)"
        )
    return line


def certification_report(summary: dict[str, Any], n0: int, n: int, alpha: float) -> str:
    """Certified accuracy vs radius (with Cohen et al.'s row), coverage per attack and σ, the
    certificate check, and plainly which numbers are certified and which only empirical."""
    return "\n".join(
        [
            f"certified accuracy vs L2 radius (CERTIFY: n0={n0} selection, n={n} estimation draws, α={alpha:g}; "
            "a certified answer must be the item's label):",
            certified_accuracy_table(summary),
            "certificates against the attacks (an answer is covered when certified with r ≥ its ‖δ‖₂):",
            coverage_lines(summary),
            certificate_check(summary),
            "certified: the certified-accuracy rows and the covered answers (each holds with probability ≥ 1−α). "
            "Only empirical: every ASR above, and L2 answers whose radius is below ‖δ‖₂ (a failed attack proves "
            "nothing). L∞ rows are outside what smoothing certifies: their ‖δ‖₂ is many times any radius here.",
        ]
    )


def side_by_side(named: list[tuple[str, dict[str, Any]]], radius: float = 0.25) -> str:
    """The models next to each other, per σ (undefended first): clean accuracy, certified accuracy
    at ``radius``, and per attack the strict and the committed ("not abstained") ASR."""
    first = named[0][1]
    cells = [["σ", "", *[name for name, _ in named]]]
    for k, row in enumerate(first["headline"]):
        sigma = row["sigma"]
        label = "undefended" if sigma is None else f"{sigma:g}"
        heads = [s["headline"][k] for _, s in named]
        cells.append([label, "clean accuracy", *[_pct(h["clean_accuracy"]) for h in heads]])
        if sigma is not None:
            cert = [_certified_at(s, sigma, radius) for _, s in named]
            cells.append(["", f"certified accuracy at r={radius:g}", *cert])
        for a in first["attacks"]:
            asr = [f"{_pct(h['asr'].get(a))} ({_pct(h['committed_asr'].get(a))})" for h in heads]
            cells.append(["", f"ASR {a} (not abstained)", *asr])
    return "\n".join(_grid(cells))


def _certified_at(summary: dict[str, Any], sigma: float, radius: float) -> str:
    for row in summary["certification"]["accuracy"]:
        if row["sigma"] == sigma:
            points = {float(p["radius"]): p["accuracy"] for p in row["points"]}
            return _pct(points.get(radius))
    return "–"
