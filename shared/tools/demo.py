"""The client half of ``smoothguard demo``: robustness audits as a user's integration runs them over REST.

Register a webhook endpoint (a local receiver), then per model — the bundled demo model and its
noise-trained copy (``demo-llava-robust``), one audit each, on the same synthetic shapes set —
submit an audit with the L2 threat model that randomized smoothing certifies (targeted PGD-L2 and
EOT-L2, the latter averaging gradients over the defense's own pixel noise) and, labelled as
outside it, PGD L∞ 16/255; the defense runs CERTIFY in pixel noise space at each σ. Follow the
progress, print per model the ASR table, certified accuracy against radius next to Cohen et al.'s
CIFAR-10 numbers, which perturbations the certificates cover, and the check that no covered
answer is wrong; save the HTML reports and check every completion webhook's signature."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from smoothguard_client import SmoothGuard

from shared.config import ASSETS, DEMO_MODEL
from shared.tools.audit_cli import follow
from shared.tools.audit_tables import certification_report, side_by_side, table
from shared.tools.receiver import Receiver

ROBUST_DEMO_MODEL = ASSETS / "demo-llava-robust"
DEMO_SEED = 20261126  # a set the demo models never saw (they trained on seeds 1000 and 999)
LINF_EPS = 16 / 255  # the paper's setting, kept as the L∞ row


@dataclass(frozen=True)
class DemoPlan:
    """What one demo run audits; ``fast()`` is the default, ``full()`` the README's full table."""

    images: int
    sigmas: tuple[float, ...]
    epsilons: tuple[float, ...]  # L2, [0, 1] pixel units
    steps: int = 40
    eot_samples: int = 8
    eot_sigma: float = 0.25  # EOT's noise: the defense's, at this σ (pixel space)
    certify_n0: int = 8
    num_samples: int = 100
    alpha: float = 0.01
    stop_loss: float | None = None

    @classmethod
    def fast(cls, **overrides: Any) -> DemoPlan:
        return replace(cls(images=3, sigmas=(0.25, 0.5), epsilons=(0.5,)), **overrides)

    @classmethod
    def full(cls, **overrides: Any) -> DemoPlan:
        plan = cls(images=12, sigmas=(0.12, 0.25, 0.5), epsilons=(0.25, 0.5, 1.0), certify_n0=16)
        return replace(plan, **overrides)


def attack_label(method: str, norm: str, eps: float) -> str:
    return f"{method}-{norm}-16" if norm == "linf" else f"{method}-{norm}-{eps:g}"


def demo_attacks(plan: DemoPlan) -> list[dict[str, Any]]:
    """Targeted PGD-L2 and EOT-L2 at each ε, then PGD L∞ 16/255 (outside what smoothing certifies)."""
    base = {"steps": plan.steps, "targeted": True, "stop_loss": plan.stop_loss}
    attacks = []
    for eps in plan.epsilons:
        l2 = base | {"norm": "l2", "eps": eps}
        attacks.append({"name": "pgd", "label": attack_label("pgd", "l2", eps), **l2})
        eot = {"eot_samples": plan.eot_samples, "sigma": plan.eot_sigma}
        attacks.append({"name": "eot", "label": attack_label("eot", "l2", eps), **l2, **eot})
    linf = base | {"norm": "linf", "eps": LINF_EPS}
    attacks.append({"name": "pgd", "label": attack_label("pgd", "linf", LINF_EPS), **linf})
    return attacks


def demo_spec(plan: DemoPlan, model: str, callback_url: str | None) -> dict[str, Any]:
    return {
        "dataset": {"format": "shapes", "seed": DEMO_SEED, "count": plan.images},
        "model": model,
        "attacks": demo_attacks(plan),
        "defense": {
            "sigmas": list(plan.sigmas),
            "noise_space": "pixel",
            "certify": True,
            "certify_n0": plan.certify_n0,
            "num_samples": plan.num_samples,
            "alpha": plan.alpha,
            "max_new_tokens": 4,
        },
        "chunk_size": 8,
        "concurrency": 2,
        "callback_url": callback_url,
    }


def demo_models() -> list[tuple[str, str]]:
    """(name, model id) of the audited models: the original first."""
    return [("demo-llava (original)", str(DEMO_MODEL)), ("demo-llava-robust (noise-trained)", str(ROBUST_DEMO_MODEL))]


def describe(plan: DemoPlan) -> str:
    eps = ", ".join(f"{e:g}" for e in plan.epsilons)
    return (
        f"attacks: targeted PGD-L2 and EOT-L2 (ε ∈ {{{eps}}} in [0,1] pixels, L2 over the 64×64 image the model sees; "
        f"{plan.steps} steps; EOT {plan.eot_samples} draws of the defense's pixel noise at σ={plan.eot_sigma:g}) "
        f"and PGD L∞ ε=16/255 ({plan.steps} steps, targeted). Defense: SmoothGuard CERTIFY in pixel noise space, "
        f"σ ∈ {{{', '.join(f'{s:g}' for s in plan.sigmas)}}}, n0={plan.certify_n0} selection + "
        f"n={plan.num_samples} estimation draws, α={plan.alpha:g}, closed answers per item (yes/no, colours)"
    )


def run_demo(url: str, key: str, *, plan: DemoPlan, out: Path, timeout: float = 3600) -> int:
    api = SmoothGuard(url, key)
    results: list[tuple[str, dict[str, Any], float]] = []
    print(describe(plan), flush=True)
    with Receiver() as receiver:
        receiver.secret = api.webhooks.create(receiver.url).secret
        for name, model in demo_models():
            started = time.perf_counter()
            audit = api.audits.submit(demo_spec(plan, model, receiver.url)).model_dump(mode="json")
            print(f"{name}: POST /v1/audits → {audit['status']}, Location: /v1/audits/{audit['id']}", flush=True)
            audit = follow(api, audit["id"], timeout=timeout).model_dump(mode="json")
            results.append((name, audit, time.perf_counter() - started))
        hooks = receiver.wait(len(results), timeout=60)
    failed = [a for _, a, _ in results if a["status"] != "succeeded"]
    for audit in failed:
        print(f"audit {audit['id']} {audit['status']}: {audit.get('error')}")
    if failed:
        return 1
    noise = "pixel (σ and radii in [0, 1] pixel units)"
    for (name, audit, elapsed), folder in zip(results, ("original", "robust"), strict=True):
        summary = audit["summary"]
        dest = out / folder
        dest.mkdir(parents=True, exist_ok=True)
        for file in ("report.html", "report.json", "items.csv"):  # the format is the suffix
            api.audits.download_report(audit["id"], dest / file)
        print(
            f"\n=== {name}: audit {audit['id']} {audit['status']} in {elapsed:.0f} s, "
            f"{audit['progress']['total']} items of the synthetic shapes set ==="
        )
        print(table(summary, noise))
        print(certification_report(summary, plan.certify_n0, plan.num_samples, plan.alpha))
        print(f"report: {(dest / 'report.html').resolve()} (also report.json, items.csv)")
    print("\n=== side by side (ASR: strict, and in brackets what the defense did not abstain on) ===")
    print(side_by_side([(name.split(" ")[0], audit["summary"]) for name, audit, _ in results]))
    ok = True
    for hook in hooks:
        ok &= bool(hook.verified)
        print(
            f"webhook: POST {receiver.url} webhook-id={hook.headers['webhook-id']} "
            f"signature {'VERIFIED' if hook.verified else 'INVALID'}; payload: {json.dumps(hook.json['data'])}"
        )
    return 0 if ok else 1
