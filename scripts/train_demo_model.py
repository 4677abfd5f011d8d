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
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.backends.tiny_llava import build_model
from shared.benchmarks.shapes import COLOURS, SHAPES, generate_set, render

TRAIN_SEED = 1000
VAL_SEED = 999
NOISE_MAX = 0.25  # max σ of the augmentation, in normalised pixel_values units


def encode_images(scenes, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    arr = np.stack([np.asarray(render(s), dtype=np.uint8) for s in scenes])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


def scene_targets(scenes) -> tuple[torch.Tensor, torch.Tensor]:
    present = torch.zeros(len(scenes), len(SHAPES))
    colour = torch.full((len(scenes), len(SHAPES)), -100, dtype=torch.long)
    names = list(COLOURS)
    for i, s in enumerate(scenes):
        for p in s.shapes:
            k = SHAPES.index(p.shape)
            present[i, k] = 1
            colour[i, k] = names.index(p.colour)
    return present, colour


def build_sequences(processor, pairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids / attention_mask / labels, right padded, exactly as the processor tokenises."""
    tok = processor.tokenizer
    n_img = processor.image_processor.crop_size["height"] // processor.patch_size
    ids, labels = [], []
    for prompt, answer in pairs:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(msgs, add_generation_prompt=True)
        text = text.replace("<image>", "<image>" * (n_img * n_img))
        p_ids = tok(text, add_special_tokens=False)["input_ids"]
        a_ids = tok(" " + answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids.append(p_ids + a_ids)
        labels.append([-100] * len(p_ids) + a_ids)
    width = max(map(len, ids))
    out_ids = torch.full((len(ids), width), tok.pad_token_id)
    out_lab = torch.full((len(ids), width), -100)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (a, b) in enumerate(zip(ids, labels, strict=False)):
        out_ids[i, : len(a)] = torch.tensor(a)
        out_lab[i, : len(b)] = torch.tensor(b)
        mask[i, : len(a)] = 1
    return out_ids, mask, out_lab


def add_noise(pixels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    b = pixels.shape[0]
    sigma = torch.rand(b, 1, 1, 1, generator=gen) * NOISE_MAX
    sigma[torch.rand(b, generator=gen) < 0.5] = 0.0
    return pixels + sigma * torch.randn(pixels.shape, generator=gen)


class VisionProbe(nn.Module):
    def __init__(self, tower: nn.Module, hidden: int):
        super().__init__()
        self.tower = tower
        self.present = nn.Linear(2 * hidden, len(SHAPES))
        self.colour = nn.Linear(2 * hidden, len(SHAPES) * len(COLOURS))

    def forward(self, pixels):
        h = self.tower(pixel_values=pixels).last_hidden_state
        feats = torch.cat([h[:, 0], h[:, 1:].mean(1)], dim=-1)
        return self.present(feats), self.colour(feats).view(-1, len(SHAPES), len(COLOURS))


def pretrain_vision(model, pixels, present, colour, steps: int, gen: torch.Generator) -> VisionProbe:
    probe = VisionProbe(model.model.vision_tower, model.config.vision_config.hidden_size)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    for step in range(steps):
        idx = torch.randint(0, len(pixels), (128,), generator=gen)
        p_logit, c_logit = probe(add_noise(pixels[idx], gen))
        loss = nn.functional.binary_cross_entropy_with_logits(p_logit, present[idx])
        loss = loss + nn.functional.cross_entropy(c_logit.flatten(0, 1), colour[idx].flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0:
            print(f"vision step {step} loss {loss.item():.4f}", flush=True)
    return probe


@torch.no_grad()
def probe_accuracy(probe: VisionProbe, pixels, present, colour) -> tuple[float, float]:
    p_logit, c_logit = probe(pixels)
    p_acc = ((p_logit > 0).float() == present).float().mean().item()
    mask = colour != -100
    c_acc = (c_logit.argmax(-1)[mask] == colour[mask]).float().mean().item()
    return p_acc, c_acc


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("shared/assets/demo-llava"))
    ap.add_argument("--scenes", type=int, default=40000)
    ap.add_argument("--vision-steps", type=int, default=1500)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--target", type=float, default=0.995)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--warmup", type=int, default=300)
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
        present, colour = scene_targets([s for s, _ in train])
        probe = pretrain_vision(model, train_px, present, colour, args.vision_steps, gen)
        print(
            "vision probe val (presence, colour):", probe_accuracy(probe, val_px, *scene_targets([s for s, _ in val]))
        )
        if args.vision_cache:
            torch.save(model.model.vision_tower.state_dict(), args.vision_cache)

    q_px, pairs = flatten(train, train_px)
    ids, mask, labels = build_sequences(processor, pairs)
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
        idx = torch.randint(0, len(ids), (64,), generator=gen)
        out = model(
            input_ids=ids[idx], attention_mask=mask[idx], pixel_values=add_noise(q_px[idx], gen), labels=labels[idx]
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
        "noise_augmentation_max_sigma": NOISE_MAX,
        "minutes": round((time.time() - t0) / 60, 1),
    }
    (args.out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
