"""Attack benchmark: PGD on B items in ONE batched optimisation vs the same items one at a time
(what a per-sample loop would cost), and EOT-PGD's price per noise draw. Ratios from one run.

    python bench/bench_attack.py                         # the bundled demo model, on the CPU
    python bench/bench_attack.py --shape llava-7b --device cuda   # LLaVA-1.5-7B shapes, random init, bf16

The 7B shape (CLIP ViT-L/14-336 + Llama-2-7B sizes) gets the demo model's word-level tokenizer and
a 336-px CLIP processor, so the attack runs through the same processor/in-graph path as a hub model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.attacks import AttackConfig, attack_images  # noqa: E402
from shared.backends.hf_vision import HFVisionGenerator  # noqa: E402
from shared.benchmarks.shapes import generate_set, render  # noqa: E402


def demo_generator(device: str) -> HFVisionGenerator:
    from shared.config import DEMO_MODEL

    return HFVisionGenerator(str(DEMO_MODEL), device=device, dtype="float32", max_batch_size=64)


def llava_7b_generator(device: str, tiny: bool = False) -> HFVisionGenerator:
    from transformers import CLIPImageProcessorPil, LlavaForConditionalGeneration, LlavaProcessor

    from bench.bench_gpu import llava_config
    from shared.benchmarks.demo_model import CHAT_TEMPLATE, build_tokenizer

    tok = build_tokenizer()
    config = llava_config(tiny=tiny)
    side, patch = config.vision_config.image_size, config.vision_config.patch_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    config.image_token_index = int(tok.convert_tokens_to_ids("<image>"))  # type: ignore[arg-type]
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(torch.float32 if tiny else torch.bfloat16).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    gen = HFVisionGenerator.__new__(HFVisionGenerator)  # the loaded pieces, without from_pretrained
    gen.name, gen.max_batch_size, gen.processor, gen.model = "llava-1.5-7b-shape", 64, processor, model
    gen.device = torch.device(device)
    processor.tokenizer.padding_side = "left"
    return gen


def items(n: int) -> tuple[list[Image.Image], list[str], list[str]]:
    scenes = generate_set(20261126, n)
    images = [render(scene) for scene, _ in scenes]
    prompts = [pairs[0][0] for _, pairs in scenes]
    targets = ["no" if pairs[0][1] == "yes" else "yes" for _, pairs in scenes]
    return images, prompts, targets


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--shape", choices=["demo", "llava-7b", "llava-tiny"], default="demo", help="llava-tiny: smoke test"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eot-samples", type=int, default=4)
    args = ap.parse_args()
    gen = (
        demo_generator(args.device)
        if args.shape == "demo"
        else llava_7b_generator(args.device, args.shape != "llava-7b")
    )
    images, prompts, targets = items(args.items)
    pgd = AttackConfig(steps=args.steps)
    eot = AttackConfig(method="eot", steps=args.steps, eot_samples=args.eot_samples, sigma=0.1)
    attack_images(gen, images[:1], prompts[:1], targets[:1], AttackConfig(steps=1))  # warm-up
    batched = timed(lambda: attack_images(gen, images, prompts, targets, pgd))
    looped = timed(
        lambda: [attack_images(gen, [i], [p], [t], pgd) for i, p, t in zip(images, prompts, targets, strict=True)]
    )
    eot_ms = timed(lambda: attack_images(gen, images, prompts, targets, eot))
    out = {
        "shape": args.shape,
        "device": torch.cuda.get_device_name() if "cuda" in args.device else args.device,
        "items": args.items,
        "steps": args.steps,
        "pgd_batched_ms": round(batched, 1),
        "pgd_one_at_a_time_ms": round(looped, 1),
        "batched_speedup": round(looped / batched, 2),
        "eot_samples": args.eot_samples,
        "eot_batched_ms": round(eot_ms, 1),
        "eot_cost_per_draw": round(eot_ms / batched / args.eot_samples, 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
