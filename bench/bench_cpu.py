"""CPU benchmark with the bundled demo model: one batched round vs the reference loop, and the
time split of a full defense between generation, embedding and clustering.

Ratios are measured within one run (this machine is noisy); absolute times are for reference.

    .venv/bin/python bench/bench_cpu.py [--repeats 5] [--candidates 10] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from shared.backends.registry import load_embedder, load_generator
from shared.config import DEMO_IMAGE, DEMO_MODEL, Settings
from shared.media.decode import load_image
from shared.smoothing import SmoothConfig, SmoothGuard, plan_round

PROMPT = "What colour is the circle?"
TIMINGS = ("generation_ms", "embedding_ms", "clustering_ms")


def timed(fn, repeats: int) -> float:
    """Median wall time of ``fn`` in ms."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    settings = Settings(device="cpu", dtype="float32")
    gen = load_generator(str(DEMO_MODEL), settings=settings)
    image = load_image(DEMO_IMAGE.read_bytes())
    config = SmoothConfig(num_samples=args.candidates, max_new_tokens=args.max_new_tokens)
    specs = plan_round(config, 0)
    # Force full-length answers so both arms decode the same number of tokens.
    gen.model.generation_config.min_new_tokens = args.max_new_tokens
    batched = timed(lambda: gen.generate(image, PROMPT, specs, max_new_tokens=args.max_new_tokens), args.repeats)
    looped = timed(
        lambda: [gen.generate(image, PROMPT, [s], max_new_tokens=args.max_new_tokens) for s in specs], args.repeats
    )
    gen.model.generation_config.min_new_tokens = None

    embedder = load_embedder("sentence-transformers:all-MiniLM-L6-v2", settings)
    splits = {}
    for sigma in (0.1, 4.0):  # the demo model is noise-robust: σ=4 makes answers diverge, so KMeans runs
        cfg = replace(config, sigma=sigma)
        SmoothGuard(gen, embedder, cfg).run(image, PROMPT)  # warm-up
        # a fresh SmoothGuard per run: its embedding cache would otherwise hide the embedding cost
        runs = [SmoothGuard(gen, embedder, cfg).run(image, PROMPT) for _ in range(args.repeats)]
        split = {k: round(statistics.median(getattr(r.timings, k) for r in runs), 1) for k in TIMINGS}
        splits[f"sigma_{sigma}"] = {**split, "distinct_answers": len({s.text for s in runs[0].samples})}
    report = {
        "torch_threads": torch.get_num_threads(),
        "candidates": len(specs),
        "forced_new_tokens": args.max_new_tokens,
        "batched_round_ms": round(batched, 1),
        "sequential_loop_ms": round(looped, 1),
        "speedup_batched_vs_loop": round(looped / batched, 2),
        "defense_split_ms": splits,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
