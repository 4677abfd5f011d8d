"""Make the bundled demo model a noise-robust base: distil its vision tower + projector so that,
under Gaussian noise on the [0, 1] pixels (the defense's ``pixel`` noise space), they give the
original model's features of the clean image; the language model stays frozen (bit-identical).

    python scripts/make_robust_demo_model.py --minutes 12

Writes ``shared/assets/demo-llava-robust/`` (the demo model's files plus ``training_info.json``:
the training record, the exact command and the held-out evaluation). Training images are the
demo model's training scenes (seed 1000), the validation callback uses its validation scenes
(999); the final check uses a seed nothing else uses (``EVAL_SEED``). A run stopped by
``--steps`` is reproducible bit-for-bit on the same machine and thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from shared.benchmarks.evaluate import accuracy
from shared.benchmarks.shapes import Question, RenderedScenes, generate_set, read_questions, render, write_set
from shared.robustify import DistilConfig, SigmaSchedule, distil
from shared.robustify.checkpoint import save_student
from shared.robustify.evaluate import accuracy_under_noise, noisy_accuracy_validator

SOURCE = Path("shared/assets/demo-llava")
OUT = Path("shared/assets/demo-llava-robust")
TRAIN_SEED = 1000  # the demo model's training scenes
VAL_SEED = 999  # its validation scenes: the validation callback's questions
EVAL_SEED = 20261127  # the final held-out check; the tests hold out 20261126


def validator(processor: Any, questions: int, sigmas: Sequence[float], seed: int):
    """A callback: accuracy of a model on ``questions`` validation questions (seed ``VAL_SEED``),
    clean and under one draw of pixel noise at each σ (σ in [0, 1] pixel units)."""
    items = [(render(scene), q, a) for scene, pairs in generate_set(VAL_SEED, -(-questions // 2)) for q, a in pairs]
    images, prompts, labels = (list(x) for x in zip(*items[:questions], strict=True))
    return noisy_accuracy_validator(processor, images, prompts, labels, sigmas, seed=seed)


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Distil ``args.source`` into ``args.out``; returns the training record (a dict)."""
    model = AutoModelForImageTextToText.from_pretrained(args.source, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(args.source)
    images = RenderedScenes([s for s, _ in generate_set(TRAIN_SEED, args.scenes)])
    config = DistilConfig(
        noise_space="pixel",
        sigma=SigmaSchedule(args.sigma_max, "sqrt_uniform", args.clean_fraction),
        steps=args.steps,
        minutes=args.minutes,
        lr=args.lr,
        batch=args.batch,
        seed=args.seed,
        warmup=args.warmup,
        eval_every=args.eval_every,
        log_every=50,
    )
    validate = validator(processor, args.val_questions, (0.25, 0.5), seed=args.seed)
    student, record = distil(model, processor, images, config, validate=validate, log=_log)
    save_student(student, args.source, args.out)
    return record.to_dict()


def evaluate(paths: dict[str, Path], count: int, noisy: int, sigmas: Sequence[float]) -> dict[str, Any]:
    """Per model: greedy clean accuracy on ``count`` held-out questions (seed ``EVAL_SEED``,
    through the ``hf`` backend, as the demo model's test) and accuracy on the first ``noisy`` of
    them under one draw of pixel noise at each σ ([correct, total] pairs)."""
    from shared.backends.registry import load_generator
    from shared.config import Settings

    out: dict[str, Any] = {"seed": EVAL_SEED, "questions": count, "noisy_questions": noisy}
    with tempfile.TemporaryDirectory() as tmp:
        write_set(EVAL_SEED, -(-count // 2), Path(tmp))
        questions = read_questions(Path(tmp) / "questions.jsonl")[:count]
        for name, path in paths.items():
            gen = load_generator(str(path), settings=Settings(device="cpu", dtype="float32"))
            clean = accuracy(gen, questions, Path(tmp))
            out[name] = {"clean": [clean.correct, clean.total]}
            for sigma in sigmas:
                out[name][f"pixel_sigma_{sigma:g}"] = noisy_accuracy(gen, questions[:noisy], Path(tmp), sigma)
            _log(f"{name}: {out[name]}")
    return out


def noisy_accuracy(generator: Any, questions: Sequence[Question], image_dir: Path, sigma: float) -> list[int]:
    """[correct, total] of ``generator``'s model under one draw of pixel noise σ per question."""
    images = [Image.open(image_dir / q.image).convert("RGB") for q in questions]
    prompts, labels = [q.text for q in questions], [q.label for q in questions]
    acc = accuracy_under_noise(
        generator.model, generator.processor, images, prompts, labels, sigma=sigma, seed=EVAL_SEED
    )
    return [acc.correct, acc.total]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--minutes", type=float, default=12.0, help="wall-clock cap on training")
    ap.add_argument("--steps", type=int, default=None, help="step cap (and the cosine schedule's length)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scenes", type=int, default=40000, help="training scenes (seed 1000), drawn with replacement")
    ap.add_argument("--sigma-max", type=float, default=0.55, help="σ_max of σ_max·√U, [0, 1] pixel units")
    ap.add_argument("--clean-fraction", type=float, default=0.0)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--val-questions", type=int, default=200)
    ap.add_argument("--eval-questions", type=int, default=1000)
    ap.add_argument("--eval-noisy", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--evaluate-only", action="store_true", help="skip training; evaluate --out and --source")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info_path = args.out / "training_info.json"
    if args.evaluate_only:
        info = json.loads(info_path.read_text())
    else:
        command = " ".join(["scripts/make_robust_demo_model.py", *(sys.argv[1:] if argv is None else argv)])
        info = {"source": str(args.source), "train_seed": TRAIN_SEED, "val_seed": VAL_SEED, "command": command}
        info |= {"threads": args.threads, "scenes": args.scenes, "record": train(args)}
        info_path.write_text(json.dumps(info, indent=2) + "\n")
    paths = {"original": args.source, "robust": args.out}
    info["evaluation"] = evaluate(paths, args.eval_questions, args.eval_noisy, (0.25, 0.5))
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
