"""Generation benchmark, through the service's own ``generate_batch``: a LLaVA-1.5-7B-shaped model
(randomly initialised: CLIP ViT-L/14-336 + Llama-2-7B shapes, bf16, the demo model's word-level
tokenizer and a 336-px CLIP processor), or any checkpoint folder (``--model``), answering rounds of
``--candidates`` × ``--new-tokens`` (every row forced to the full length):

- one undefended call (1 candidate) and the reference loop (``--candidates`` sequential calls);
- batches of 1×, 4× and 8× a round (11/44/88 candidates: one job, or rounds batched across jobs)
  in three modes: **eager** (dynamic KV cache), **static** (static KV cache, not compiled) and
  **compiled** (static cache + ``torch.compile``'d decoding, the batch padded to its bucket —
  ``SMOOTHGUARD_COMPILE_GENERATOR``); ``*_first_s`` is the first call (the compile).

One JSON on stdout (also written to ``--out`` after every measurement, so a run cut short keeps
what it measured). The 7B shape needs a CUDA device with ~60 GB free (88 rows of KV cache); about
7 minutes on one H100/H200 by estimate (not yet run on one), most of it the two compiles.

    python bench/bench_gpu.py                                   # 7B shape on CUDA
    python bench/bench_gpu.py --save /tmp/llava-7b-shape        # only write that checkpoint (bench_gpu_service.py --model)
    python bench/bench_gpu.py --model shared/assets/demo-llava --device cpu --new-tokens 32 --batches 11,88
    python bench/bench_gpu.py --tiny --device cpu --new-tokens 3 --candidates 3 --batches 3   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig  # noqa: E402

from bench.bench_attack import llava_7b_generator  # noqa: E402
from shared.backends import compiled  # noqa: E402
from shared.backends.hf_common import generate_batch  # noqa: E402
from shared.backends.hf_vision import HFVisionGenerator  # noqa: E402
from shared.config import DEMO_IMAGE  # noqa: E402
from shared.media.decode import load_image  # noqa: E402
from shared.smoothing.noise import plan_round  # noqa: E402
from shared.smoothing.types import SmoothConfig  # noqa: E402

IMAGE_TOKEN = 32000
PROMPT = "What colour is the circle?"
MODES = ("eager", "static", "compiled")


def llava_config(tiny: bool) -> LlavaConfig:
    if tiny:
        vision = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
            projection_dim=32,
        )
        text = LlamaConfig(
            vocab_size=32064,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=1024,
        )
    else:
        vision = CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
        )
        text = LlamaConfig(
            vocab_size=32064,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
        )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )


def save_random_llava(folder: Path, device: str, tiny: bool) -> None:
    """The random 7B-shaped (or tiny) LLaVA with its processor, loadable by the service
    (``SMOOTHGUARD_MODEL=folder``)."""
    gen = llava_7b_generator(device, tiny=tiny)
    gen.model.save_pretrained(folder)
    gen.processor.save_pretrained(folder)


def set_mode(model: Any, mode: str, buckets: tuple[int, ...]) -> None:
    """``eager``, ``static`` or ``compiled`` for the model's next ``generate`` calls."""
    config = model.generation_config
    config.cache_implementation = None if mode == "eager" else "static"
    config.compile_config = None
    config.disable_compile = mode != "compiled"  # on CUDA a static cache alone would compile
    setattr(model, compiled.BUCKETS_ATTR, ())
    if mode == "compiled":
        compiled.enable(model, buckets)


def round_batch(gen: HFVisionGenerator, candidates: int) -> dict[str, torch.Tensor]:
    """The inputs of ``candidates`` noisy copies of the demo image (σ = 0.1, normalised)."""
    specs = plan_round(SmoothConfig(num_samples=candidates, include_clean=False), 0)
    return gen.prepare(load_image(DEMO_IMAGE.read_bytes()), PROMPT, specs)


def timed(fn, repeats: int, device: torch.device, stat=statistics.median) -> float:
    """Wall milliseconds of ``repeats`` calls: their median (or ``stat``)."""
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return stat(out) * 1e3


class Bench:
    """One generator, forced to ``new_tokens`` per row; results gathered in ``report``."""

    def __init__(self, gen: HFVisionGenerator, args: argparse.Namespace):
        self.gen, self.new_tokens, self.repeats, self.out = gen, args.new_tokens, args.repeats, args.out
        self.stat = min if args.stat == "min" else statistics.median
        gen.model.generation_config.min_new_tokens = args.new_tokens  # no row stops early: equal work per mode
        self.report: dict[str, Any] = {}

    def call(self, batch: dict[str, torch.Tensor]) -> None:
        generate_batch(self.gen.model, self.gen.processor, batch, self.gen.device, self.new_tokens)

    def record(self, key: str, value: Any) -> None:
        self.report[key] = round(value, 2) if isinstance(value, float) else value
        print(f"{time.strftime('%H:%M:%S')} {key} = {self.report[key]}", file=sys.stderr, flush=True)
        if self.out:
            self.out.write_text(json.dumps(self.report, indent=2))

    def undefended_and_sequential(self, candidates: int) -> None:
        set_mode(self.gen.model, "eager", ())
        one, many = round_batch(self.gen, 1), round_batch(self.gen, candidates)
        singles = [{k: v[i : i + 1] for k, v in many.items()} for i in range(candidates)]
        self.call(one)  # warm-up
        self.record("undefended_1_call_ms", self.timed(lambda: self.call(one)))
        self.record("sequential_ms", timed(lambda: [self.call(s) for s in singles], 1, self.gen.device))

    def batch(self, mode: str, rows: int, buckets: tuple[int, ...]) -> None:
        """First call (a compile, for ``compiled``) then the median of ``repeats`` calls."""
        set_mode(self.gen.model, mode, buckets)
        batch = round_batch(self.gen, rows)
        t0 = time.perf_counter()
        self.call(batch)
        self.record(f"{mode}_{rows}_first_s", time.perf_counter() - t0)
        self.record(f"{mode}_{rows}_ms", self.timed(lambda: self.call(batch)))

    def timed(self, fn) -> float:
        return timed(fn, self.repeats, self.gen.device, self.stat)


def load(args: argparse.Namespace) -> HFVisionGenerator:
    if args.model:
        return HFVisionGenerator(args.model, device=args.device, dtype=args.dtype, max_batch_size=max(args.batches))
    return llava_7b_generator(args.device, tiny=args.tiny)


def summary(report: dict[str, Any], candidates: int, batches: list[int]) -> dict[str, Any]:
    """The ratios: batched vs sequential, and each mode vs eager per batch size."""
    out: dict[str, Any] = {}
    if "sequential_ms" in report and f"eager_{candidates}_ms" in report:
        out["speedup_batched_vs_sequential"] = round(report["sequential_ms"] / report[f"eager_{candidates}_ms"], 2)
    for rows in batches:
        for mode in ("static", "compiled"):
            if f"{mode}_{rows}_ms" in report and f"eager_{rows}_ms" in report:
                out[f"speedup_{mode}_vs_eager_{rows}"] = round(
                    report[f"eager_{rows}_ms"] / report[f"{mode}_{rows}_ms"], 2
                )
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a tiny random LLaVA instead of the 7B shape")
    ap.add_argument("--model", help="a checkpoint folder instead of the random LLaVA")
    ap.add_argument("--dtype", default="auto", help="with --model: auto | float32 | bfloat16 | float16")
    ap.add_argument("--save", type=Path, help="only write the random LLaVA (7B or --tiny) with its processor here")
    ap.add_argument("--candidates", type=int, default=11, help="one round: num_samples 10 + the clean input")
    ap.add_argument("--batches", help="batch sizes, comma-separated (default: 1, 4 and 8 rounds)")
    ap.add_argument("--buckets", default="8,16,32,64,128", help="the compiled mode's bucket sizes")
    ap.add_argument("--modes", default=",".join(MODES), help="of eager,static,compiled")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--stat", choices=("median", "min"), default="median", help="min: on a busy machine")
    ap.add_argument("--out", type=Path, help="also write the JSON here, after every measurement")
    args = ap.parse_args()
    n = args.candidates
    args.batches = [int(b) for b in args.batches.split(",")] if args.batches else [n, 4 * n, 8 * n]
    args.modes = [m for m in args.modes.split(",") if m]
    return args


def main() -> None:
    args = parse_args()
    if args.save:
        save_random_llava(args.save, args.device, args.tiny)
        print(json.dumps({"saved": str(args.save), "tiny": args.tiny}))
        return
    gen = load(args)
    bench = Bench(gen, args)
    device = gen.device
    bench.record("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    bench.record("model", args.model or ("random tiny LLaVA" if args.tiny else "random LLaVA-1.5-7B shape"))
    bench.record("dtype", str(gen.model.dtype).removeprefix("torch."))
    bench.record("candidates", args.candidates)
    bench.record("new_tokens", args.new_tokens)
    buckets = compiled.compile_buckets(True, args.buckets, max(args.batches))
    bench.record("buckets", list(buckets))
    bench.undefended_and_sequential(args.candidates)
    for mode in [m for m in MODES if m in args.modes]:
        for rows in args.batches:
            try:
                bench.batch(mode, rows, buckets)
            except Exception as exc:  # report, don't hide, a static-cache or compile failure
                bench.record(f"{mode}_{rows}_error", f"{type(exc).__name__}: {exc}"[:300])
    for key, value in summary(bench.report, args.candidates, args.batches).items():
        bench.record(key, value)
    print(json.dumps(bench.report, indent=2))


if __name__ == "__main__":
    main()
