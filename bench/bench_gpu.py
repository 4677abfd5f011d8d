"""GPU benchmark: a LLaVA-1.5-7B-shaped model (randomly initialised: CLIP ViT-L/14-336 +
Llama-2-7B shapes, bf16) answering 11 candidates × 128 new tokens — one undefended call, the
reference loop (11 sequential calls), ONE batched call, and the batched call with a static KV
cache (compiled by ``generate``). Needs a CUDA device and ~16 GB of GPU memory.

    python bench/bench_gpu.py                 # on any CUDA machine
    python bench/bench_gpu.py --tiny --device cpu --new-tokens 4   # smoke test of this script
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

IMAGE_TOKEN = 32000


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


def inputs(config: LlavaConfig, batch: int, device: torch.device, dtype: torch.dtype, prompt_tokens: int = 40):
    side = config.vision_config.image_size // config.vision_config.patch_size
    gen = torch.Generator().manual_seed(0)
    text = torch.randint(3, 32000, (prompt_tokens,), generator=gen)
    ids = torch.cat([text[:5], torch.full((side * side,), IMAGE_TOKEN), text[5:]]).repeat(batch, 1)
    size = config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size, generator=gen) + 0.1 * torch.randn(batch, 3, size, size, generator=gen)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "pixel_values": pixels.to(device, dtype),
    }


def timed(fn, repeats: int, device: torch.device) -> float:
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--candidates", type=int, default=11)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    config = llava_config(args.tiny)
    torch.manual_seed(0)
    with device:
        model = LlavaForConditionalGeneration(config).to(dtype).eval()
    n, k = args.candidates, args.new_tokens
    kw = {"max_new_tokens": k, "min_new_tokens": k, "do_sample": False, "pad_token_id": 0}
    one, many = inputs(config, 1, device, dtype), inputs(config, n, device, dtype)
    singles = [{key: v[i : i + 1] for key, v in many.items()} for i in range(n)]

    @torch.inference_mode()
    def gen(batch, **extra):
        return model.generate(**batch, **kw, **extra)

    gen(one)  # warm-up
    results = {
        "undefended_1_call_ms": timed(lambda: gen(one), args.repeats, device),
        "sequential_ms": timed(lambda: [gen(s) for s in singles], max(1, args.repeats - 1), device),
        "batched_ms": timed(lambda: gen(many), args.repeats, device),
    }
    try:
        gen(many, cache_implementation="static")  # compile / warm-up
        gen(many, cache_implementation="static")
        results["batched_static_cache_ms"] = timed(
            lambda: gen(many, cache_implementation="static"), args.repeats, device
        )
    except Exception as exc:  # report, don't hide, a static-cache failure
        results["batched_static_cache_error"] = f"{type(exc).__name__}: {exc}"[:300]
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "tiny": args.tiny,
        "candidates": n,
        "new_tokens": k,
        **{key: round(v, 1) if isinstance(v, float) else v for key, v in results.items()},
    }
    report["speedup_batched_vs_sequential"] = round(results["sequential_ms"] / results["batched_ms"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
