"""Certified accuracy against radius (Cohen et al.'s CERTIFY) of the bundled demo models on held-out
shapes questions, next to Cohen et al.'s CIFAR-10 figures at the same σ.

Closed answers (yes/no, or the set's colours), noise on the [0, 1] pixels (``pixel``), separate
selection (n0) and estimation (n) draws, α as given. An item counts as certified at radius r when
the certificate's class is the right answer and its radius is ≥ r (Cohen et al.'s "certified
accuracy"). Each item's n0 + n + 1 candidates go through the core in as few batched calls as the
batch size allows.

    .venv/bin/python bench/bench_certify.py --items 100 --sigmas 0.25,0.5 --n0 16 --n 512 --alpha 0.001
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import torch

from shared.backends.registry import load_embedder, load_generator
from shared.benchmarks.shapes import COLOURS, generate_set, render
from shared.config import ASSETS, Settings
from shared.smoothing import SmoothConfig, SmoothGuard
from shared.smoothing.types import YES_NO

MODELS = {"original": ASSETS / "demo-llava", "robust": ASSETS / "demo-llava-robust"}
HELD_OUT_SEED = 20261128  # used by nothing else (training 1000/999; tests 20261126; robustify check 20261127)
# Cohen, Rosenfeld & Kolter (2019), CIFAR-10, certified accuracy at radius r (Figure/Table: σ = 0.25, 0.5)
COHEN_CIFAR10 = {0.25: {0.0: 0.75, 0.25: 0.60, 0.5: 0.43}, 0.5: {0.0: 0.65, 0.25: 0.55, 0.5: 0.41, 1.0: 0.22}}


@dataclass
class Row:
    kind: str  # yes_no | colour
    right: bool  # the certificate's class is the label
    radius: float | None


def questions(seed: int, count: int) -> list[tuple[object, str, str]]:
    items = [(render(scene), q, a) for scene, pairs in generate_set(seed, -(-count // 2)) for q, a in pairs]
    return items[:count]


def certify_all(generator, embedder, items, sigma: float, args) -> list[Row]:
    rows = []
    for image, prompt, label in items:
        answers = YES_NO if label in YES_NO else tuple(COLOURS)
        config = SmoothConfig(
            sigma=sigma,
            num_samples=args.n,
            noise_space="pixel",
            certify=True,
            certify_n0=args.n0,
            alpha=args.alpha,
            answer_set=answers,
            max_new_tokens=args.max_new_tokens,
        )
        cert = SmoothGuard(generator, embedder, config).run(image, prompt).consensus.certificate
        kind = "yes_no" if answers == YES_NO else "colour"
        rows.append(Row(kind, cert.label == label and cert.radius is not None, cert.radius))
    return rows


def certified_accuracy(rows: list[Row], radii: list[float]) -> dict[float, float]:
    return {r: sum(x.right and (x.radius or 0) >= r for x in rows) / len(rows) for r in radii}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="original,robust")
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED)
    ap.add_argument("--sigmas", default="0.25,0.5")
    ap.add_argument("--n0", type=int, default=16)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--radii", default="0,0.125,0.25,0.5,1.0")
    ap.add_argument("--max-new-tokens", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = Settings(device="cpu", dtype="float32", max_batch_size=args.n + args.n0 + 1)
    radii = [float(r) for r in args.radii.split(",")]
    items = questions(args.seed, args.items)
    embedder = load_embedder(settings=settings)
    out = {"items": len(items), "seed": args.seed, "n0": args.n0, "n": args.n, "alpha": args.alpha, "results": {}}
    for name in args.models.split(","):
        generator = load_generator(str(MODELS[name]), settings=settings)
        for sigma in [float(s) for s in args.sigmas.split(",")]:
            start = time.perf_counter()
            rows = certify_all(generator, embedder, items, sigma, args)
            yes_no = [r for r in rows if r.kind == "yes_no"]
            result = {
                "certified_accuracy": certified_accuracy(rows, radii),
                "yes_no": certified_accuracy(yes_no, radii),
                "cohen_cifar10": COHEN_CIFAR10.get(sigma, {}),
                "seconds": round(time.perf_counter() - start, 1),
            }
            out["results"][f"{name} σ={sigma:g}"] = result
            print(
                f"{name:8} σ={sigma:<4g} "
                + "  ".join(f"r={r:g}: {v:.0%}" for r, v in result["certified_accuracy"].items())
                + f"   (yes/no {len(yes_no)}: "
                + "  ".join(f"{v:.0%}" for v in result["yes_no"].values())
                + ")"
                + f"   Cohen CIFAR-10: {result['cohen_cifar10']}   {result['seconds']} s",
                flush=True,
            )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
