"""``smoothguard robustify``: make a local checkpoint a noise-robust base (``shared.robustify``):
its vision tower + projector distilled under Gaussian noise to its own clean features, the
language model frozen; trained on a folder of images or on the synthetic shapes set. The same
training runs as a GPU job over REST: ``POST /v1/robust-models`` (``shared.robust_models``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.robust_models.spec import RobustifyOptions
from shared.smoothing.types import IMAGE_NOISE_SPACES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("robustify", help="distil a model's vision side to be robust to the defense's noise")
    p.add_argument("model", type=Path, help="a local checkpoint folder (LLaVA / LLaVA-NeXT layout)")
    p.add_argument("--out", type=Path, required=True, help="where the robust checkpoint is written")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="a folder of training images (png, jpg, webp, bmp)")
    source.add_argument("--shapes", type=int, help="train on this many synthetic shapes scenes")
    defaults = RobustifyOptions.model_validate({})

    def described(name: str) -> str:
        return f"{RobustifyOptions.model_fields[name].description} (default %(default)s)"

    p.add_argument(
        "--noise-space", choices=IMAGE_NOISE_SPACES, default=defaults.noise_space, help=described("noise_space")
    )
    p.add_argument("--sigma-max", type=float, default=None, help="σ_max of σ_max·√U (default by noise space)")
    p.add_argument("--steps", type=int, default=None, help="step cap")
    p.add_argument("--minutes", type=float, default=defaults.minutes, help="wall-clock cap")
    p.add_argument("--lr", type=float, default=defaults.lr, help=described("lr"))
    p.add_argument("--batch", type=int, default=defaults.batch, help=described("batch"))
    p.add_argument("--seed", type=int, default=defaults.seed, help=described("seed"))


def run(args: argparse.Namespace) -> int:
    """Train, write the checkpoint and ``training_info.json`` (the record and the command)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from shared.robustify import distil
    from shared.robustify.checkpoint import save_student

    if not (args.model / "config.json").is_file():
        raise ValueError(f"{args.model} is not a local checkpoint folder (no config.json)")
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(args.model)
    fields = ("noise_space", "sigma_max", "steps", "minutes", "lr", "batch", "seed")
    options = RobustifyOptions.model_validate({f: getattr(args, f) for f in fields})  # the REST job's bounds too
    config = options.distil_config()
    student, record = distil(model, processor, training_images(args), config, log=print)
    save_student(student, args.model, args.out)
    info: dict[str, Any] = {"source": str(args.model), "command": " ".join(["smoothguard", *sys.argv[1:]])}
    (args.out / "training_info.json").write_text(json.dumps(info | {"record": record.to_dict()}, indent=2) + "\n")
    print(f"wrote {args.out} ({record.steps} steps)")
    return 0


def training_images(args: argparse.Namespace) -> Any:
    from shared.benchmarks.shapes import RenderedScenes, generate_set
    from shared.robustify.inputs import ImageFolder

    if args.images is not None:
        return ImageFolder(args.images)
    return RenderedScenes([scene for scene, _ in generate_set(args.seed, args.shapes)])
