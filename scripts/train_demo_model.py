"""Train the bundled demo MLLM (tiny LLaVA architecture) on the synthetic shapes set, on CPU.

Two stages: (1) pre-train the vision tower on shape-presence and colour labels, which keeps
the language model from learning colour-only shortcuts; (2) train the whole LLaVA model on
the questions with teacher forcing (loss on the answer tokens only). Half of each batch gets
Gaussian noise on the normalised pixel values so the model stays usable under smoothing.

    python scripts/train_demo_model.py --out shared/assets/demo-llava --minutes 12
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from shared.benchmarks.demo_model import build_model
from shared.benchmarks.shapes import (
    COLOURS,
    IMAGE_SIZE,
    SHAPES,
    Scene,
    colour_question,
    existence_question,
    generate_set,
    render,
)

TRAIN_SEED = 1000
VAL_SEED = 999
NOISE_MAX = 0.25  # max σ of the augmentation, in normalised pixel_values units


def encode_images(scenes, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    arr = np.stack([np.asarray(render(s), dtype=np.uint8) for s in scenes])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


def patch_targets(scenes, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per scene and image patch: the shape covering most of it (``len(SHAPES)`` = background)
    and that shape's colour (-100 on background)."""
    names = list(COLOURS)
    grid = IMAGE_SIZE // patch
    shape_t = torch.full((len(scenes), grid * grid), len(SHAPES), dtype=torch.long)
    colour_t = torch.full((len(scenes), grid * grid), -100, dtype=torch.long)
    for i, scene in enumerate(scenes):
        mask = np.asarray(render_mask(scene)).reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3)
        mask = mask.reshape(grid * grid, patch * patch)
        for j, cells in enumerate(mask):
            values, counts = np.unique(cells, return_counts=True)
            best = int(values[counts.argmax()])
            if best < len(scene.shapes) and counts.max() * 3 >= patch * patch:  # a third of the patch
                shape_t[i, j] = SHAPES.index(scene.shapes[best].shape)
                colour_t[i, j] = names.index(scene.shapes[best].colour)
    return shape_t, colour_t


def render_mask(scene) -> Image.Image:
    """The scene with shape ``k`` drawn in grey level ``k`` on a background of 255."""
    plain = Scene(tuple(replace(s, colour="red") for s in scene.shapes), (255, 255, 255))
    img = np.asarray(render(plain).convert("RGB"))
    out = np.full(img.shape[:2], 255, dtype=np.uint8)
    for k, s in enumerate(scene.shapes):
        solo = np.asarray(render(Scene((replace(s, colour="red"),), (255, 255, 255))).convert("RGB"))
        out[(solo != 255).any(-1)] = k
    return Image.fromarray(out)


def build_sequences(processor, pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids / attention_mask / labels, right padded; prompts tokenised by the processor itself."""
    tok = processor.tokenizer
    blank = Image.new("RGB", (64, 64))
    prompt_ids: dict[str, list[int]] = {}
    ids, labels = [], []
    for prompt, answer in pairs:
        if prompt not in prompt_ids:
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            text = processor.apply_chat_template(msgs, add_generation_prompt=True)
            prompt_ids[prompt] = processor(images=[blank], text=[text])["input_ids"][0]
        p_ids = list(prompt_ids[prompt])
        a_ids = tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids.append(p_ids + a_ids)
        labels.append([-100] * len(p_ids) + a_ids)
    width = max(map(len, ids))
    out_ids = torch.full((len(ids), width), tok.pad_token_id)
    out_lab = torch.full((len(ids), width), -100)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (a, b) in enumerate(zip(ids, labels, strict=True)):
        out_ids[i, : len(a)] = torch.tensor(a)
        out_lab[i, : len(b)] = torch.tensor(b)
        mask[i, : len(a)] = 1
    return out_ids, mask, out_lab


def add_noise(pixels: torch.Tensor, gen: torch.Generator, noise_max: float = NOISE_MAX) -> torch.Tensor:
    b = pixels.shape[0]
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * noise_max
    sigma[torch.rand(b, generator=gen) < 0.5] = 0.0
    return pixels + sigma * torch.randn(pixels.shape, generator=gen)


class VisionProbe(nn.Module):
    """Reads, from every patch token, which shape covers the patch and its colour. The LLaVA
    projector passes patch tokens on, so the language model can find "the circle" by attention
    (query: the shape word; keys: patches that say "circle") and read its colour or presence."""

    def __init__(self, tower: nn.Module, hidden: int):
        super().__init__()
        self.tower = tower
        self.shape = nn.Linear(hidden, len(SHAPES) + 1)
        self.colour = nn.Linear(hidden, len(COLOURS))

    def forward(self, pixels):
        patches = self.tower(pixel_values=pixels).last_hidden_state[:, 1:]
        return self.shape(patches), self.colour(patches)


def pretrain_vision(
    model, pixels, shape_t, colour_t, steps: int, gen: torch.Generator, noise_max: float = NOISE_MAX
) -> VisionProbe:
    probe = VisionProbe(model.model.vision_tower, model.config.vision_config.hidden_size)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        idx = torch.randint(0, len(pixels), (128,), generator=gen)
        shape_logits, colour_logits = probe(add_noise(pixels[idx], gen, noise_max))
        loss = nn.functional.cross_entropy(shape_logits.flatten(0, 1), shape_t[idx].flatten())
        loss = loss + nn.functional.cross_entropy(
            colour_logits.flatten(0, 1), colour_t[idx].flatten(), ignore_index=-100
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0:
            print(f"vision step {step} loss {loss.item():.4f}", flush=True)
    return probe


@torch.no_grad()
def probe_accuracy(probe: VisionProbe, pixels, shape_t, colour_t) -> tuple[float, float]:
    """(per-patch shape accuracy, colour accuracy on shape patches)."""
    shape_logits, colour_logits = probe(pixels)
    shape_acc = (shape_logits.argmax(-1) == shape_t).float().mean().item()
    on = colour_t != -100
    return shape_acc, (colour_logits.argmax(-1)[on] == colour_t[on]).float().mean().item()


@torch.no_grad()
def first_token_accuracy(model, pixels, ids, mask, labels) -> tuple[float, float]:
    """Accuracy of the first answer token on (yes/no, colour) questions."""
    model.eval()
    hits = []
    for s in range(0, len(ids), 256):
        sl = slice(s, s + 256)
        logits = model(input_ids=ids[sl], attention_mask=mask[sl], pixel_values=pixels[sl]).logits
        first = (labels[sl] != -100).int().argmax(1)
        rows = torch.arange(len(first))
        pred = logits[rows, first - 1].argmax(-1)
        hits.append(pred == labels[sl][rows, first])
    model.train()
    ok = torch.cat(hits).float()
    return ok[0::2].mean().item(), ok[1::2].mean().item()  # questions alternate yes/no, colour


def flatten(scenes_pairs, pixels):
    index, pairs = [], []
    for i, (_, qa) in enumerate(scenes_pairs):
        for pair in qa:
            index.append(i)
            pairs.append(pair)
    return pixels[torch.tensor(index)], pairs


class QuestionPools:
    """Every question each training scene answers, grouped so batches can be drawn with a chosen
    yes-rate per shape. Early on the yes-rate depends on the shape word (``SKEW``): the shape
    word alone then predicts the answer, which teaches the model to route it to the answer
    position; after that, balanced batches teach the shape-word × image interaction, which has
    no first-order gradient on its own (yes/no otherwise stays at chance)."""

    SKEW = {"circle": 0.9, "square": 0.1, "triangle": 0.9, "cross": 0.1}

    def __init__(self, scenes, processor, seed: int = 0):
        image, pairs, keys = [], [], []
        for i, scene in enumerate(scenes):
            for shape in SHAPES:
                image.append(i)
                pairs.append((existence_question(shape), "yes" if scene.colour_of(shape) else "no"))
                keys.append((shape, pairs[-1][1]))
            for placed in scene.shapes:
                image.append(i)
                pairs.append((colour_question(placed.shape), placed.colour))
                keys.append(("colour",))
        self.image = torch.tensor(image)
        self.ids, self.mask, self.labels = build_sequences(processor, pairs)
        groups: dict[tuple, list[int]] = {}
        for j, key in enumerate(keys):
            groups.setdefault(key, []).append(j)
        self.groups = groups
        self.rng = random.Random(seed)

    def batch(self, size: int, skew: bool) -> torch.Tensor:
        colour = self.groups[("colour",)]
        out = [colour[self.rng.randrange(len(colour))] for _ in range(size // 2)]
        for _ in range(size - size // 2):
            shape = self.rng.choice(SHAPES)
            yes_rate = self.SKEW[shape] if skew else 0.5
            group = self.groups[(shape, "yes" if self.rng.random() < yes_rate else "no")]
            out.append(group[self.rng.randrange(len(group))])
        return torch.tensor(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("shared/assets/demo-llava"))
    ap.add_argument("--scenes", type=int, default=40000)
    ap.add_argument("--vision-steps", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--target", type=float, default=0.995)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--skew-steps", type=int, default=1500)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--noise-max", type=float, default=NOISE_MAX, help="max σ of the noise augmentation (0: none)")
    ap.add_argument("--vision-cache", type=Path, default=None, help="reuse a pre-trained vision tower")
    args = ap.parse_args()
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    random.seed(0)
    model, processor = build_model(seed=0)
    ip = processor.image_processor
    mean, std = torch.tensor(ip.image_mean), torch.tensor(ip.image_std)

    t0 = time.time()
    train = generate_set(TRAIN_SEED, args.scenes)
    val = generate_set(VAL_SEED, 1000)
    train_px = encode_images([s for s, _ in train], mean, std)
    val_px = encode_images([s for s, _ in val], mean, std)
    print(f"rendered in {time.time() - t0:.1f}s", flush=True)

    if args.vision_cache and args.vision_cache.is_file():
        model.model.vision_tower.load_state_dict(torch.load(args.vision_cache))
    else:
        patch = model.config.vision_config.patch_size
        targets = patch_targets([s for s, _ in train], patch)
        probe = pretrain_vision(model, train_px, *targets, args.vision_steps, gen, args.noise_max)
        accs = probe_accuracy(probe, val_px, *patch_targets([s for s, _ in val], patch))
        print("vision probe val (patch shape, patch colour):", accs, flush=True)
        if args.vision_cache:
            torch.save(model.model.vision_tower.state_dict(), args.vision_cache)

    pools = QuestionPools([s for s, _ in train], processor)
    v_px, v_pairs = flatten(val, val_px)
    v_ids, v_mask, v_labels = build_sequences(processor, v_pairs)

    vision = list(model.model.vision_tower.parameters())
    vision_ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in vision_ids]
    opt = torch.optim.AdamW([{"params": rest, "lr": args.lr}, {"params": vision, "lr": args.lr / 5}], weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup))
    deadline = time.time() + args.minutes * 60
    step, acc = 0, 0.0
    model.train()
    while time.time() < deadline:
        idx = pools.batch(64, skew=step < args.skew_steps)
        out = model(
            input_ids=pools.ids[idx],
            attention_mask=pools.mask[idx],
            pixel_values=add_noise(train_px[pools.image[idx]], gen, args.noise_max),
            labels=pools.labels[idx],
        )
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {out.loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
        if step % args.eval_every == 0:
            yes_no, colour_acc = first_token_accuracy(model, v_px, v_ids, v_mask, v_labels)
            acc = (yes_no + colour_acc) / 2
            print(f"step {step} val accuracy {acc:.4f} (yes/no {yes_no:.4f}, colour {colour_acc:.4f})", flush=True)
            if acc >= args.target:
                break
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    info = {
        "train_seed": TRAIN_SEED,
        "val_seed": VAL_SEED,
        "scenes": args.scenes,
        "steps": step,
        "val_first_token_accuracy": acc,
        "noise_augmentation_max_sigma": args.noise_max,
        "minutes": round((time.time() - t0) / 60, 1),
        "vision_steps": args.vision_steps,
        "skew_steps": args.skew_steps,
        "lr": args.lr,
        "warmup": args.warmup,
        "batch": 64,
    }
    (args.out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
