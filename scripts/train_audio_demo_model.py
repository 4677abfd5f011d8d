"""Train the bundled audio demo model (tiny Qwen2-Audio architecture) on the synthetic tones set, on CPU.

Two stages, as for the image demo (scripts/train_demo_model.py): (1) pre-train the audio encoder
on labels of its own output tokens — each 40 ms token's pitch (silence, low, high) and, at every
token, the clip's beep count, first and last pitch and which pitches it holds — so the perception
lives in the encoder and the language model learns no shortcuts; (2) train the whole model on
the questions with teacher forcing (loss on the answer tokens only). Half of each batch gets the
defense's Gaussian noise on the waveform (``noise_space='waveform'``, σ uniform up to
``--noise-max`` in amplitude units, on the clip only, before the zero padding — as
``shared.backends.hf_audio`` places it), so the model stays usable under smoothing.

    python scripts/train_audio_demo_model.py --out shared/assets/demo-qwen2-audio --encoder-steps 1500 --minutes 27
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from shared.attacks.audio import LogMel
from shared.backends.registry import LocalRuntime, load_generator
from shared.benchmarks.demo_audio_model import HOP, audio_accuracy, build_model
from shared.benchmarks.tones import COUNT_WORDS, PITCHES, Clip, generate_set, read_set, render, write_set

TRAIN_SEED = 3000
VAL_SEED = 2999  # the held-out test uses 20261203, which training never sees
NOISE_MAX = 0.1  # max σ of the augmentation, in waveform amplitude units (the defense's default σ)
TOKEN_SAMPLES = 4 * HOP  # one encoder output token: stride-2 convolution, then pooling by 2
PITCH_NAMES = list(PITCHES)
CLIP_HEADS = {"count": len(COUNT_WORDS), "first": 2, "last": 2, "has_low": 2, "has_high": 2}


def audio_token_count(samples: int) -> int:
    """Audio tokens the processor puts in the prompt for a clip of ``samples`` (its formula)."""
    frames = -(-samples // HOP)
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


def render_batch(clips: list[Clip], n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms zero-padded to ``n_samples`` ``[B, n_samples]`` and each clip's length."""
    waves = torch.zeros(len(clips), n_samples)
    for i, clip in enumerate(clips):
        waves[i, : clip.length] = torch.from_numpy(render(clip))
    return waves, torch.tensor([c.length for c in clips])


def add_noise(waves: torch.Tensor, lengths: torch.Tensor, sigma: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Row ``i`` plus ``sigma[i]``·N(0, I) on the clip, not on its zero padding (the defense's placement)."""
    inside = torch.arange(waves.shape[1])[None] < lengths[:, None]
    return waves + sigma[:, None] * torch.randn(waves.shape, generator=gen) * inside


def augment(waves: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator, noise_max: float) -> torch.Tensor:
    """Half of the rows get noise of σ ~ U(0, noise_max), the other half none."""
    sigma = torch.rand(len(waves), generator=gen) * noise_max
    sigma[torch.rand(len(waves), generator=gen) < 0.5] = 0.0
    return add_noise(waves, lengths, sigma, gen)


def features(logmel: LogMel, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_features`` and ``feature_attention_mask`` as ``WhisperFeatureExtractor`` makes them."""
    frames = -(-lengths // HOP)
    mask = (torch.arange(logmel.n_samples // HOP)[None] < frames[:, None]).long()
    return logmel(waves), mask


def encode(model, input_features: torch.Tensor, feature_mask: torch.Tensor) -> torch.Tensor:
    """The audio tower's output tokens ``[B, tokens, d]``, masked as ``Qwen2AudioModel`` masks them."""
    tower = model.model.audio_tower
    lengths, _ = tower._get_feat_extract_output_lengths(feature_mask.sum(-1))
    positions = input_features.shape[-1] // 2
    valid = (torch.arange(positions)[None] < lengths[:, None]).long()
    dummy = torch.zeros(len(valid), positions, 1)
    mask = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=valid)
    return tower(input_features, attention_mask=mask).last_hidden_state


def encoder_targets(clips: list[Clip], tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip and output token ``[B, tokens, 2]``: the pitch sounding for most of it (0
    silence, 1 low, 2 high) and which beep that is (0 none, 1 the first, …), -100 past the clip;
    and per clip the labels of ``CLIP_HEADS``."""
    frame = torch.full((len(clips), tokens, 2), -100, dtype=torch.long)
    clip_t = torch.zeros((len(clips), len(CLIP_HEADS)), dtype=torch.long)
    for i, clip in enumerate(clips):
        pitch = np.zeros(tokens * TOKEN_SAMPLES, dtype=np.int64)
        index = np.zeros(tokens * TOKEN_SAMPLES, dtype=np.int64)
        for k, b in enumerate(clip.beeps):
            pitch[b.start : b.start + b.length] = 1 + PITCH_NAMES.index(b.pitch)
            index[b.start : b.start + b.length] = 1 + k
        sounding = (pitch.reshape(tokens, TOKEN_SAMPLES) > 0).mean(1) >= 0.5
        middle = slice(TOKEN_SAMPLES // 2, None, TOKEN_SAMPLES)
        valid = audio_token_count(clip.length)
        frame[i, :valid, 0] = torch.from_numpy(pitch[middle] * sounding)[:valid]
        frame[i, :valid, 1] = torch.from_numpy(index[middle] * sounding)[:valid]
        p = clip.pitches
        clip_t[i] = torch.tensor(
            [len(p) - 1, PITCH_NAMES.index(p[0]), PITCH_NAMES.index(p[-1]), int("low" in p), int("high" in p)]
        )
    return frame, clip_t


class EncoderProbe(nn.Module):
    """Linear read-outs on every audio token: its own pitch, and the clip's labels."""

    def __init__(self, model, hidden: int):
        super().__init__()
        self.model = model
        self.frame = nn.ModuleList([nn.Linear(hidden, 3), nn.Linear(hidden, 1 + len(COUNT_WORDS))])
        self.clip = nn.ModuleList(nn.Linear(hidden, n) for n in CLIP_HEADS.values())

    def forward(self, input_features, feature_mask):
        tokens = encode(self.model, input_features, feature_mask)
        return [head(tokens) for head in self.frame], [head(tokens) for head in self.clip]


def probe_loss(probe: EncoderProbe, feats, fmask, frame_t, clip_t) -> tuple[torch.Tensor, list[float]]:
    """Cross-entropy of every read-out, and the accuracies (token pitch, token's beep, then each
    clip label on every valid token)."""
    frame_logits, clip_logits = probe(feats, fmask)
    valid = frame_t[..., 0] != -100
    loss, accs = torch.zeros(()), []
    for k, logits in enumerate(frame_logits):
        target = frame_t[..., k][valid]
        loss = loss + nn.functional.cross_entropy(logits[valid], target)
        accs.append((logits[valid].argmax(-1) == target).float().mean().item())
    for k, logits in enumerate(clip_logits):
        target = clip_t[:, k : k + 1].expand_as(valid)[valid]
        loss = loss + nn.functional.cross_entropy(logits[valid], target)
        accs.append((logits[valid].argmax(-1) == target).float().mean().item())
    return loss, accs


def pretrain_encoder(model, train, logmel, steps: int, gen, noise_max: float, batch: int) -> EncoderProbe:
    probe = EncoderProbe(model, model.config.audio_config.d_model)
    params = [*model.model.audio_tower.parameters(), *probe.frame.parameters(), *probe.clip.parameters()]
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    tokens = logmel.n_samples // TOKEN_SAMPLES
    for step in range(steps):
        clips = [train[i][0] for i in torch.randint(0, len(train), (batch,), generator=gen).tolist()]
        waves, lengths = render_batch(clips, logmel.n_samples)
        feats, fmask = features(logmel, augment(waves, lengths, gen, noise_max), lengths)
        loss, accs = probe_loss(probe, feats, fmask, *encoder_targets(clips, tokens))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"encoder step {step} loss {loss.item():.4f} accs {fmt(accs)}", flush=True)
    return probe


@torch.no_grad()
def probe_accuracy(probe: EncoderProbe, clips: list[Clip], logmel: LogMel, sigma: float, gen) -> list[float]:
    waves, lengths = render_batch(clips, logmel.n_samples)
    feats, fmask = features(logmel, add_noise(waves, lengths, torch.full((len(clips),), sigma), gen), lengths)
    _, accs = probe_loss(probe, feats, fmask, *encoder_targets(clips, logmel.n_samples // TOKEN_SAMPLES))
    return accs


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


class Prompts:
    """Token ids of a (question, clip length) prompt — the chat template with the audio token
    repeated as the processor repeats it — and of an answer; cached."""

    def __init__(self, processor):
        self.processor = processor
        self.tok = processor.tokenizer
        self.cache: dict[tuple[str, int], list[int]] = {}

    def prompt(self, text: str, tokens: int) -> list[int]:
        key = (text, tokens)
        if key not in self.cache:
            audio = self.processor.audio_token
            text = chat(self.processor, text).replace(audio, audio * tokens)
            self.cache[key] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self.cache[key]

    def answer(self, label: str) -> list[int]:
        return self.tok(" " + label, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]

    def batch(self, clips: list[Clip], questions: list[tuple[str, str]]):
        """input_ids, attention_mask, labels (loss on the answer and end of turn), right padded."""
        ids, labels = [], []
        for clip, (text, label) in zip(clips, questions, strict=True):
            p, a = self.prompt(text, audio_token_count(clip.length)), self.answer(label)
            ids.append(p + a)
            labels.append([-100] * len(p) + a)
        width = max(map(len, ids))
        out_ids = torch.full((len(ids), width), self.tok.pad_token_id)
        out_lab = torch.full((len(ids), width), -100)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, (a, b) in enumerate(zip(ids, labels, strict=True)):
            out_ids[i, : len(a)], out_lab[i, : len(b)], mask[i, : len(a)] = torch.tensor(a), torch.tensor(b), 1
        return out_ids, mask, out_lab


def chat(processor, text: str) -> str:
    """The prompt as ``shared.backends.hf_audio`` writes it: the clip, then the question."""
    msgs = [{"role": "user", "content": [{"type": "audio", "audio_url": "input"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(msgs, add_generation_prompt=True)


def check_against_processor(processor, prompts: Prompts, logmel: LogMel, clip: Clip, text: str) -> None:
    """This script's inputs for one clip equal the processor's (so training sees what serving sees)."""
    ref = processor(text=[chat(processor, text)], audio=[render(clip)], sampling_rate=16000, return_tensors="pt")
    assert ref["input_ids"][0].tolist() == prompts.prompt(text, audio_token_count(clip.length))
    feats, fmask = features(logmel, *render_batch([clip], logmel.n_samples))
    assert torch.equal(fmask, ref["feature_attention_mask"]), (fmask.sum(), ref["feature_attention_mask"].sum())
    gap = (feats - ref["input_features"]).abs().max().item()
    assert gap < 1e-3, f"log-mel differs from the feature extractor's by {gap}"


def sample_questions(data, idx: list[int], rng: random.Random):
    clips, questions = [], []
    for i in idx:
        clip, asked = data[i]
        text, label, _ = asked[rng.randrange(len(asked))]
        clips.append(clip)
        questions.append((text, label))
    return clips, questions


@torch.no_grad()
def first_token_accuracy(model, prompts: Prompts, logmel: LogMel, data, sigma: float, gen) -> dict[str, float]:
    """Teacher-forced accuracy of the answer's first token per category, on every question of ``data``."""
    model.eval()
    hits: dict[str, list[bool]] = {}
    for s in range(0, len(data), 64):
        part = data[s : s + 64]
        clips = [c for c, asked in part for _ in asked]
        questions = [(t, lab) for _, asked in part for t, lab, _ in asked]
        cats = [cat for _, asked in part for _, _, cat in asked]
        waves, lengths = render_batch(clips, logmel.n_samples)
        feats, fmask = features(logmel, add_noise(waves, lengths, torch.full((len(clips),), sigma), gen), lengths)
        ids, mask, labels = prompts.batch(clips, questions)
        logits = model(input_ids=ids, attention_mask=mask, input_features=feats, feature_attention_mask=fmask).logits
        first = (labels != -100).int().argmax(1)
        rows = torch.arange(len(first))
        ok = logits[rows, first - 1].argmax(-1) == labels[rows, first]
        for cat, hit in zip(cats, ok.tolist(), strict=True):
            hits.setdefault(cat, []).append(hit)
    model.train()
    out = {cat: sum(h) / len(h) for cat, h in hits.items()}
    out["all"] = sum(sum(h) for h in hits.values()) / sum(len(h) for h in hits.values())
    return out


def train_whole(model, prompts, logmel, train, val, args, gen, t0: float) -> tuple[int, dict[str, float]]:
    tower = list(model.model.audio_tower.parameters())
    tower_ids = {id(p) for p in tower}
    rest = [p for p in model.parameters() if id(p) not in tower_ids and p.requires_grad]
    groups = [{"params": rest, "lr": args.lr}, {"params": [p for p in tower if p.requires_grad], "lr": args.lr / 5}]
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup))
    rng = random.Random(1)
    deadline = t0 + args.minutes * 60
    step, acc = 0, {"all": 0.0}
    model.train()
    while time.time() < deadline:
        idx = torch.randint(0, len(train), (args.batch,), generator=gen).tolist()
        clips, questions = sample_questions(train, idx, rng)
        waves, lengths = render_batch(clips, logmel.n_samples)
        feats, fmask = features(logmel, augment(waves, lengths, gen, args.noise_max), lengths)
        ids, mask, labels = prompts.batch(clips, questions)
        inputs = {"input_features": feats, "feature_attention_mask": fmask, "attention_mask": mask}
        out = model(input_ids=ids, labels=labels, **inputs)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} loss {out.loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
        if step % args.eval_every == 0:
            acc = first_token_accuracy(model, prompts, logmel, val, 0.0, torch.Generator().manual_seed(5))
            print(f"step {step} val first-token accuracy {acc}", flush=True)
            if acc["all"] >= args.target:
                break
    return step, acc


def evaluate_saved(out: Path, seed: int, clips: int, sigmas: list[float]) -> dict[str, float]:
    """Greedy accuracy of the saved checkpoint through the real ``hf-audio`` generator (batched),
    on a written set of ``seed``: clean and with one draw of waveform noise per σ."""
    with tempfile.TemporaryDirectory() as tmp:
        write_set(Path(tmp), seed, clips)
        items = read_set(Path(tmp))[:1000]
    generator = load_generator(str(out), "hf-audio", LocalRuntime(device="cpu", dtype="float32", max_batch_size=64))
    return {f"sigma_{s:g}": audio_accuracy(generator, items, sigma=s, seed=7).value for s in sigmas}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("shared/assets/demo-qwen2-audio"))
    ap.add_argument("--clips", type=int, default=40000)
    ap.add_argument("--encoder-steps", type=int, default=1500)
    ap.add_argument("--minutes", type=float, default=27.0, help="the whole run's budget (both stages)")
    ap.add_argument("--target", type=float, default=0.995, help="stop once validation first-token accuracy reaches it")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--noise-max", type=float, default=NOISE_MAX, help="max σ of the waveform noise (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    model, processor = build_model(seed=0)
    logmel = LogMel(processor.feature_extractor)
    prompts = Prompts(processor)

    t0 = time.time()
    train = generate_set(TRAIN_SEED, args.clips)
    val = generate_set(VAL_SEED, 300)
    check_against_processor(processor, prompts, logmel, train[0][0], train[0][1][0][0])

    probe = pretrain_encoder(model, train, logmel, args.encoder_steps, gen, args.noise_max, args.batch)
    val_clips = [c for c, _ in val]
    for sigma in (0.0, args.noise_max):
        accs = probe_accuracy(probe, val_clips, logmel, sigma, torch.Generator().manual_seed(3))
        print(f"encoder probe val at sigma {sigma:g} (pitch, beep, {', '.join(CLIP_HEADS)}): {fmt(accs)}", flush=True)
    encoder_minutes = (time.time() - t0) / 60

    step, acc = train_whole(model, prompts, logmel, train, val, args, gen, t0)
    minutes = (time.time() - t0) / 60
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    generated = evaluate_saved(args.out, VAL_SEED, 334, [0.0, 0.05, args.noise_max])
    print(f"validation accuracy through the hf-audio generator: {generated}", flush=True)
    info = {
        "train_seed": TRAIN_SEED,
        "val_seed": VAL_SEED,
        "clips": args.clips,
        "encoder_steps": args.encoder_steps,
        "encoder_minutes": round(encoder_minutes, 1),
        "steps": step,
        "minutes": round(minutes, 1),
        "val_first_token_accuracy": acc,
        "val_generated_accuracy": generated,
        "noise_augmentation_max_sigma": args.noise_max,
        "lr": args.lr,
        "warmup": args.warmup,
        "batch": args.batch,
        "torch_threads": args.threads,
        "command": " ".join(["scripts/train_audio_demo_model.py", *sys.argv[1:]]),
    }
    (args.out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
