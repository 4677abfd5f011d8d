"""The client half of ``smoothguard demo``: robustness audits as a user's integration runs them over REST.

Register a webhook endpoint (a local receiver), then per model — the bundled demo model and its
noise-trained copy (``demo-llava-robust``), one audit each, on the same synthetic shapes set —
submit an audit with the L2 threat model that randomized smoothing certifies (targeted PGD-L2 and
EOT-L2, the latter averaging gradients over the defense's own pixel noise) and, labelled as
outside it, PGD L∞ 16/255; the defense runs CERTIFY in pixel noise space at each σ. Follow the
progress, print per model the ASR table, certified accuracy against radius next to Cohen et al.'s
CIFAR-10 numbers, which perturbations the certificates cover, and the check that no covered
answer is wrong; save the HTML reports and check every completion webhook's signature.

The audio half does the same for the bundled audio demo model (``demo-qwen2-audio``, the
Qwen2-Audio architecture) on the synthetic tones set: targeted PGD-L2 and EOT-L2 on the waveform
(amplitude units, L2 over the whole clip) at a radius smoothing can certify and one it cannot,
and PGD L∞; CERTIFY in waveform noise. ``modality`` picks the halves."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from smoothguard_client import SmoothGuard

from shared.config import ASSETS, DEMO_AUDIO_MODEL, DEMO_MODEL
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
    linf_eps: float = LINF_EPS

    @property
    def linf_label(self) -> str:
        return f"pgd-linf-{self.linf_eps * 255:g}"  # ε in 255ths of the pixel range

    @classmethod
    def fast(cls, **overrides: Any) -> DemoPlan:
        return replace(cls(images=3, sigmas=(0.25, 0.5), epsilons=(0.5,)), **overrides)

    @classmethod
    def full(cls, **overrides: Any) -> DemoPlan:
        plan = cls(images=12, sigmas=(0.12, 0.25, 0.5), epsilons=(0.25, 0.5, 1.0), certify_n0=16)
        return replace(plan, **overrides)


@dataclass(frozen=True)
class AudioPlan:
    """The audio audit: clips of the tones set (three questions each), σ and ε in waveform amplitude
    (clips in [−1, 1], beeps of 0.2–0.6); the L2 ε over the whole 16 kHz clip."""

    clips: int = 2
    sigmas: tuple[float, ...] = (0.05, 0.1)
    epsilons: tuple[float, ...] = (0.1, 1.0)  # L2: within the radius n=100 can certify at σ=0.1, and past it
    linf_eps: float = 0.02
    steps: int = 40
    eot_samples: int = 8
    eot_sigma: float = 0.1
    certify_n0: int = 8
    num_samples: int = 100
    alpha: float = 0.01
    stop_loss: float | None = None

    @property
    def linf_label(self) -> str:
        return f"pgd-linf-{self.linf_eps:g}"


def plan_attacks(plan: DemoPlan | AudioPlan) -> list[dict[str, Any]]:
    """Targeted PGD-L2 and EOT-L2 at each of the plan's ε, then PGD L∞ at its ``linf_eps``."""
    base = {"steps": plan.steps, "targeted": True, "stop_loss": plan.stop_loss}
    eot = {"eot_samples": plan.eot_samples, "sigma": plan.eot_sigma}
    attacks = []
    for eps in plan.epsilons:
        l2 = base | {"norm": "l2", "eps": eps}
        attacks.append({"name": "pgd", "label": f"pgd-l2-{eps:g}", **l2})
        attacks.append({"name": "eot", "label": f"eot-l2-{eps:g}", **l2, **eot})
    attacks.append({"name": "pgd", "label": plan.linf_label, **base, "norm": "linf", "eps": plan.linf_eps})
    return attacks


def plan_spec(
    plan: DemoPlan | AudioPlan, dataset: dict[str, Any], model: str, noise_space: str, callback_url: str | None
) -> dict[str, Any]:
    """The audit of one half of the demo: ``dataset``, the plan's attacks, CERTIFY at its σ."""
    return {
        "dataset": dataset,
        "model": model,
        "attacks": plan_attacks(plan),
        "defense": {
            "sigmas": list(plan.sigmas),
            "noise_space": noise_space,
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


def audio_spec(plan: AudioPlan, callback_url: str | None) -> dict[str, Any]:
    dataset = {"format": "tones", "seed": DEMO_SEED, "count": plan.clips}
    return plan_spec(plan, dataset, str(DEMO_AUDIO_MODEL), "waveform", callback_url)


def describe_audio(plan: AudioPlan) -> str:
    eps = ", ".join(f"{e:g}" for e in plan.epsilons)
    return (
        f"audio: {plan.clips} clips of the tones set × 3 questions on demo-qwen2-audio; targeted PGD-L2 and EOT-L2 "
        f"(ε ∈ {{{eps}}}, waveform amplitude, L2 over the 16 kHz clip; EOT {plan.eot_samples} draws of the "
        f"defense's noise at σ={plan.eot_sigma:g}) and PGD L∞ ε={plan.linf_eps:g} ({plan.steps} steps). Defense: "
        f"CERTIFY in waveform noise, σ ∈ {{{', '.join(f'{s:g}' for s in plan.sigmas)}}}, n0={plan.certify_n0} + "
        f"n={plan.num_samples}, α={plan.alpha:g}. What a certificate covers: an L2 change of the waveform up to "
        "its radius (at σ=0.1 and n=100, at most ~0.17 — an RMS of ~0.001 over a 2 s clip); larger L2 and any "
        "L∞ attack are only measured, not certified"
    )


def demo_spec(plan: DemoPlan, model: str, callback_url: str | None) -> dict[str, Any]:
    dataset = {"format": "shapes", "seed": DEMO_SEED, "count": plan.images}
    return plan_spec(plan, dataset, model, "pixel", callback_url)


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


@dataclass(frozen=True)
class DemoAudit:
    """One finished audit of the demo: its heading, the API's audit, seconds, where its files went."""

    name: str
    audit: dict[str, Any]
    seconds: float
    folder: str
    noise: str
    plan: DemoPlan | AudioPlan


def submit_and_follow(api: SmoothGuard, name: str, spec: dict[str, Any], timeout: float) -> tuple[dict, float]:
    started = time.perf_counter()
    audit = api.audits.submit(spec).model_dump(mode="json")
    print(f"{name}: POST /v1/audits → {audit['status']}, Location: /v1/audits/{audit['id']}", flush=True)
    return follow(api, audit["id"], timeout=timeout).model_dump(mode="json"), time.perf_counter() - started


def image_audits(api: SmoothGuard, plan: DemoPlan, hook: str, timeout: float) -> list[DemoAudit]:
    print(describe(plan), flush=True)
    noise = "pixel (σ and radii in [0, 1] pixel units)"
    done = []
    for (name, model), folder in zip(demo_models(), ("original", "robust"), strict=True):
        audit, seconds = submit_and_follow(api, name, demo_spec(plan, model, hook), timeout)
        done.append(DemoAudit(name, audit, seconds, folder, noise, plan))
    return done


def audio_audit(api: SmoothGuard, plan: AudioPlan, hook: str, timeout: float) -> DemoAudit:
    print(describe_audio(plan), flush=True)
    audit, seconds = submit_and_follow(api, "demo-qwen2-audio", audio_spec(plan, hook), timeout)
    return DemoAudit("demo-qwen2-audio", audit, seconds, "audio", "waveform (σ, ε and radii in amplitude units)", plan)


def print_audit(api: SmoothGuard, done: DemoAudit, out: Path) -> None:
    audit, plan = done.audit, done.plan
    dest = out / done.folder
    dest.mkdir(parents=True, exist_ok=True)
    for file in ("report.html", "report.json", "items.csv"):  # the format is the suffix
        api.audits.download_report(audit["id"], dest / file)
    kind = "clips' questions of the tones set" if done.folder == "audio" else "items of the synthetic shapes set"
    print(
        f"\n=== {done.name}: audit {audit['id']} {audit['status']} in {done.seconds:.0f} s, "
        f"{audit['progress']['total']} {kind} ==="
    )
    print(table(audit["summary"], done.noise))
    print(certification_report(audit["summary"], plan.certify_n0, plan.num_samples, plan.alpha))
    print(f"report: {(dest / 'report.html').resolve()} (also report.json, items.csv)")


def run_demo(
    url: str,
    key: str,
    *,
    plan: DemoPlan,
    out: Path,
    audio: AudioPlan | None = None,
    modality: str = "all",
    timeout: float = 3600,
) -> int:
    """The image half (both image models), then the audio half, as ``modality`` says."""
    api = SmoothGuard(url, key)
    with Receiver() as receiver:
        receiver.secret = api.webhooks.create(receiver.url).secret
        done = image_audits(api, plan, receiver.url, timeout) if modality in ("image", "all") else []
        if modality in ("audio", "all"):
            done.append(audio_audit(api, audio or AudioPlan(), receiver.url, timeout))
        hooks = receiver.wait(len(done), timeout=60)
    failed = [d.audit for d in done if d.audit["status"] != "succeeded"]
    for bad in failed:
        print(f"audit {bad['id']} {bad['status']}: {bad.get('error')}")
    if failed:
        return 1
    for finished in done:
        print_audit(api, finished, out)
    images = [(d.name.split(" ")[0], d.audit["summary"]) for d in done if d.folder != "audio"]
    if images:
        print("\n=== side by side (ASR: strict, and in brackets what the defense did not abstain on) ===")
        print(side_by_side(images))
    ok = True
    for hook in hooks:
        ok &= bool(hook.verified)
        print(
            f"webhook: POST {receiver.url} webhook-id={hook.headers['webhook-id']} "
            f"signature {'VERIFIED' if hook.verified else 'INVALID'}; payload: {json.dumps(hook.json['data'])}"
        )
    return 0 if ok else 1
