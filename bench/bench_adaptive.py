"""Adaptive sampling against the paper's fixed N on held-out shapes questions of the bundled demo
model: samples spent, accuracy and abstain rate per policy, at each noise level asked for.

Policies: ``fixed`` — N noisy candidates + the clean one in one round (the paper's default,
N=10); ``adaptive-rR`` — rounds of R noisy candidates (+ the clean one in round 0) up to a
budget, stopping as soon as the consensus bound decides (or can no longer decide). Every other
setting is SmoothConfig's default (KMeans k=2, α=0.05, open answers). Each question gets its own
job seed, the same for every policy, so the policies see the same noise draws (candidate i of
``fixed`` is candidate i of every adaptive run): the comparison is paired.

All questions advance round by round together: each round of every still-running question goes
through ``generate_many`` (batched across questions), then the core's ``aggregate`` and
``next_step`` decide per question, as ``SmoothGuard.run`` does for one. A candidate is generated
once per noise level and reused by every policy that draws it (``SharedDraws``), so adding round
sizes costs little. ``--verify K`` reruns the first K questions of each policy through
``SmoothGuard.run`` with the generator itself (its own batches) and counts agreements.

Accuracy: the answer's first word is the label (POPE parsing), abstained or not; ``answered
correct`` counts an abstention as not answered. ``floor`` is the fewest candidates an adaptive
policy can spend (a unanimous first round): the first look's level is ``first_look_share`` × α
(``--first-look-shares``: ``even`` is α / looks, every look alike; a number is the core's
front-loaded spending with that share, the rest split over the later looks).

    .venv/bin/python bench/bench_adaptive.py --questions 500 --round-sizes 3,4,5,6,7,8,10 \\
        --first-look-shares even,0.8 --noise normalized:0.1,pixel:0.25 --verify 25
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from PIL import Image
from threadpoolctl import threadpool_limits

from shared.backends.registry import load_embedder, load_generator
from shared.benchmarks.evaluate import is_correct
from shared.benchmarks.shapes import generate_set, render
from shared.config import DEMO_MODEL, Settings
from shared.smoothing import Sample, SmoothConfig, SmoothGuard, SmoothResult, plan_round
from shared.smoothing.consensus import lower_bound
from shared.smoothing.smoother import EmbeddingCache, aggregate, next_step
from shared.smoothing.types import CandidateSpec, Generation, Generator, NoiseSpace, RoundRequest

HELD_OUT_SEED = 20261130  # unused elsewhere (training 1000/999; tests 20261126; 20261127-29 other benches)


@dataclass(frozen=True)
class Item:
    image: Image.Image
    prompt: str
    label: str


@dataclass(frozen=True)
class Policy:
    name: str
    config: SmoothConfig  # seed 0; each question runs with seed = its index


def held_out_items(seed: int, count: int) -> list[Item]:
    """``count`` questions (two per image) of the shapes set drawn from ``seed``."""
    scenes = generate_set(seed, -(-count // 2))
    items = [Item(render(scene), q, a) for scene, pairs in scenes for q, a in pairs]
    return items[:count]


def policies(args: argparse.Namespace, space: NoiseSpace, sigma: float) -> list[Policy]:
    base = SmoothConfig(sigma=sigma, noise_space=space, max_new_tokens=args.max_new_tokens)
    out = [Policy(f"fixed-{args.fixed}", replace(base, num_samples=args.fixed))]
    for r in args.round_sizes:
        adaptive = replace(base, adaptive=True, num_samples=args.budget, round_size=r)
        for share in args.first_look_shares:
            even = share == "even"  # every look at α / looks (the core's rule before front-loading)
            config = replace(adaptive, first_look_share=1 / adaptive.max_rounds if even else float(share))
            out.append(Policy(f"adaptive-r{r}-{'even' if even else share}", config))
    return out


class SharedDraws:
    """The generator, with each candidate generated once per question: a candidate (input, prompt,
    seed, σ, space) is the same for every policy, so later policies reuse earlier draws. Misses
    still go through ``generate_many`` in one batched call per round."""

    def __init__(self, generator: Generator):
        self.generator = generator
        self.name = generator.name
        self._cache: dict[tuple[Any, ...], Generation] = {}
        self.generated = 0

    def generate_many(self, requests: Sequence[RoundRequest], *, max_new_tokens: int) -> list[list[Generation]]:
        keys = [[self.key(r, s, max_new_tokens) for s in r.candidates] for r in requests]
        missing = [
            RoundRequest(r.media, r.prompt, [s for s, k in zip(r.candidates, ks, strict=True) if k not in self._cache])
            for r, ks in zip(requests, keys, strict=True)
        ]
        missing = [r for r in missing if r.candidates]
        if missing:
            fresh = self.generator.generate_many(missing, max_new_tokens=max_new_tokens)
            for r, gens in zip(missing, fresh, strict=True):
                for s, g in zip(r.candidates, gens, strict=True):
                    self._cache[self.key(r, s, max_new_tokens)] = g
                self.generated += len(gens)
        return [[self._cache[k] for k in ks] for ks in keys]

    @staticmethod
    def key(request: RoundRequest, spec: CandidateSpec, max_new_tokens: int) -> tuple[Any, ...]:
        return (
            id(request.media),
            request.prompt,
            spec.seed,
            spec.sigma,
            spec.noise_space,
            spec.is_clean,
            max_new_tokens,
        )


def defend_all(
    generator: SharedDraws, embed: EmbeddingCache, config: SmoothConfig, items: list[Item]
) -> list[SmoothResult]:
    """Every item defended with ``config`` (seed = item index), rounds batched across items."""
    configs = [replace(config, seed=i) for i in range(len(items))]
    samples: list[list[Sample]] = [[] for _ in items]
    results: list[SmoothResult | None] = [None] * len(items)
    active, round_index = list(range(len(items))), 0
    while active:
        specs = {i: plan_round(configs[i], round_index) for i in active}
        requests = [RoundRequest(items[i].image, items[i].prompt, specs[i]) for i in active]
        gens = generator.generate_many(requests, max_new_tokens=config.max_new_tokens)
        round_index += 1
        still = []
        for i, batch in zip(active, gens, strict=True):
            samples[i] += [Sample.from_generation(s, g) for s, g in zip(specs[i], batch, strict=True)]
            result = aggregate(
                samples[i], embed, configs[i], rounds=round_index, stop="fixed", generator=generator.name
            )
            reason = next_step(result, configs[i])
            if reason is None:
                still.append(i)
            else:
                result.stop_reason = reason
                results[i] = result
        active = still
    return [r for r in results if r is not None]


def verify(
    generator: Generator, embedder: Any, config: SmoothConfig, items: list[Item], got: list[SmoothResult]
) -> int:
    """How many of ``items`` ``SmoothGuard.run`` answers as ``defend_all`` did (answer, spent, abstained)."""
    same = 0
    for i, (item, batched) in enumerate(zip(items, got, strict=False)):
        alone = SmoothGuard(generator, embedder, replace(config, seed=i)).run(item.image, item.prompt)
        key = (alone.answer, alone.samples_spent, alone.abstained)
        same += key == (batched.answer, batched.samples_spent, batched.abstained)
    return same


def decision_floor(config: SmoothConfig) -> int:
    """The fewest candidates a run can spend before the bound decides (every noisy draw agrees)."""
    per_round = config.round_size if config.adaptive else config.num_samples
    n = next((n for n in range(1, config.num_samples + 1) if lower_bound(n, n, config.look_alpha(0)) > 0.5), None)
    noisy = config.num_samples if n is None else min(-(-n // per_round) * per_round, config.num_samples)
    return noisy + int(config.include_clean)


def summarize(results: list[SmoothResult], items: list[Item]) -> dict[str, Any]:
    spent = [r.samples_spent for r in results]
    correct = [is_correct(r.answer, it.label) for r, it in zip(results, items, strict=True)]
    abstained = [r.abstained for r in results]
    return {
        "mean_samples": round(statistics.fmean(spent), 3),
        "max_samples": max(spent),
        "mean_rounds": round(statistics.fmean(r.rounds for r in results), 3),
        "accuracy": round(statistics.fmean(correct), 4),
        "abstain_rate": round(statistics.fmean(abstained), 4),
        "answered_correct": round(statistics.fmean(c and not a for c, a in zip(correct, abstained, strict=True)), 4),
        "stop_reasons": dict(Counter(r.stop_reason for r in results)),
    }


def compare(
    row: dict[str, Any], baseline: dict[str, Any], results: list[SmoothResult], base: list[SmoothResult]
) -> None:
    """Adds the paired differences from the fixed baseline to ``row``."""
    row["samples_saved_pct"] = round(100 * (1 - row["mean_samples"] / baseline["mean_samples"]), 1)
    row["d_accuracy"] = round(row["accuracy"] - baseline["accuracy"], 4)
    row["d_abstain_rate"] = round(row["abstain_rate"] - baseline["abstain_rate"], 4)
    row["same_answer_as_fixed"] = round(
        statistics.fmean(a.answer == b.answer for a, b in zip(results, base, strict=True)), 4
    )


def run_noise(args: argparse.Namespace, generator, embedder, items: list[Item], space: NoiseSpace, sigma: float):
    """Every policy at one noise level; the policies share their candidates (``SharedDraws``)."""
    t0 = time.perf_counter()
    draws = SharedDraws(generator)
    embed = EmbeddingCache(embedder)  # answers repeat across questions and policies: embed each once
    rows: dict[str, dict[str, Any]] = {}
    first: list[SmoothResult] = []
    for policy in policies(args, space, sigma):
        results = defend_all(draws, embed, policy.config, items)
        row = {"floor": decision_floor(policy.config)} | summarize(results, items)
        if first:
            compare(row, next(iter(rows.values())), results, first)
        else:
            first = results
        if args.verify:
            same = verify(generator, embedder, policy.config, items[: args.verify], results)
            row["verified_same"] = f"{same}/{min(args.verify, len(items))}"
        rows[policy.name] = row
        print(f"{space}:{sigma:g} {policy.name}: {row}", file=sys.stderr, flush=True)  # progress
    return {"policies": rows, "candidates_generated": draws.generated, "wall_s": round(time.perf_counter() - t0, 1)}


def print_table(report: dict[str, Any]) -> None:
    cols = ("mean_samples", "floor", "samples_saved_pct", "accuracy", "abstain_rate", "answered_correct")
    for noise, level in report["results"].items():
        rows = level["policies"]
        print(f"\n{noise}: {level['candidates_generated']} candidates generated, {level['wall_s']} s")
        print(f"  {'policy':<20}" + "".join(f"{c:>18}" for c in cols))
        for name, row in rows.items():
            print(f"  {name:<20}" + "".join(f"{str(row.get(c, '-')):>18}" for c in cols))


def parse_noise(text: str) -> list[tuple[NoiseSpace, float]]:
    out = []
    for part in text.split(","):
        space, _, sigma = part.partition(":")
        out.append((SmoothConfig(noise_space=space).noise_space, float(sigma)))  # type: ignore[arg-type]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=500)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="shapes set seed (held out from training)")
    ap.add_argument("--fixed", type=int, default=10, help="N of the fixed baseline (noisy; + the clean one)")
    ap.add_argument("--budget", type=int, default=40, help="adaptive budget of noisy candidates")
    ap.add_argument("--round-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[5, 8])
    ap.add_argument(
        "--first-look-shares",
        type=lambda s: s.split(","),
        default=["even", str(SmoothConfig().first_look_share)],
        help="shares of α spent at the first look ('even': α / looks)",
    )
    ap.add_argument("--noise", type=parse_noise, default=parse_noise("normalized:0.1,pixel:0.25"))
    ap.add_argument("--max-new-tokens", type=int, default=SmoothConfig().max_new_tokens)
    ap.add_argument("--verify", type=int, default=0, help="rerun this many questions through SmoothGuard.run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # KMeans' OpenMP pool too
    settings = Settings(device="cpu", dtype="float32")
    generator = load_generator(str(DEMO_MODEL), settings=settings)
    embedder = load_embedder(settings=settings)
    items = held_out_items(args.seed, args.questions)
    report: dict[str, Any] = {
        "questions": len(items),
        "seed": args.seed,
        "torch_threads": torch.get_num_threads(),
        "fixed_n": args.fixed,
        "budget": args.budget,
        "results": {
            f"{space}:{sigma:g}": run_noise(args, generator, embedder, items, space, sigma)
            for space, sigma in args.noise
        },
    }
    if not args.json_only:
        print_table(report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
