"""Noise-robust distillation of an MLLM's image path (Cohen et al.'s recipe for a smoothed base).

A student copy of the model is trained so that its vision tower + projector, given a NOISY image,
produce the frozen teacher's (the original model's) projected features of the CLEAN image (MSE
over every image token and feature). The language model and the head are frozen and left
bit-identical, so the student answers like the original wherever its features do, but keeps
doing so under the defense's Gaussian noise. Everything random (which images, each σ, each
image's noise seed) comes from one ``torch.Generator`` seeded by ``DistilConfig.seed``: the
same config and image source give the same weights (same hardware, same threads).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from shared.robustify.inputs import (
    SigmaSchedule,
    default_schedule,
    specs_for,
    to_model,
    unit_image,
    vision_inputs,
)
from shared.robustify.layout import VisionPath
from shared.smoothing.noise import candidate_seed
from shared.smoothing.types import IMAGE_NOISE_SPACES, CandidateSpec, ImageNoiseSpace

Validator = Callable[[nn.Module], Mapping[str, float]]
M = TypeVar("M", bound=nn.Module)
EVAL_STREAM = "robustify"


@dataclass(frozen=True)
class DistilConfig:
    """How to train. ``sigma`` in ``noise_space`` units (default σ_max·√U, σ_max 0.55 for
    ``pixel``, 2.0 for ``normalized``). Training stops at ``steps`` or after ``minutes``,
    whichever comes first (one of them is required). The learning rate warms up linearly over
    ``warmup`` steps, then (``cosine`` and ``steps`` given) decays to a tenth by ``steps``."""

    noise_space: ImageNoiseSpace = "pixel"
    sigma: SigmaSchedule | None = None
    steps: int | None = None
    minutes: float | None = None
    lr: float = 3e-4
    batch: int = 64
    seed: int = 0
    warmup: int = 50
    weight_decay: float = 0.0
    cosine: bool = True
    clip: float | None = 1.0
    eval_every: int = 0  # run the validation callback every this many steps (0: only at the end)
    log_every: int = 0

    def __post_init__(self) -> None:
        if self.noise_space not in IMAGE_NOISE_SPACES:
            raise ValueError(f"noise_space must be one of {IMAGE_NOISE_SPACES}, got {self.noise_space!r}")
        if self.steps is None and self.minutes is None:
            raise ValueError("give steps or minutes (or both)")
        if self.batch < 1 or self.lr <= 0 or (self.steps is not None and self.steps < 1):
            raise ValueError("batch and steps must be >= 1 and lr > 0")

    @property
    def schedule(self) -> SigmaSchedule:
        return self.sigma or default_schedule(self.noise_space)


@dataclass
class TrainingRecord:
    """What a run did, JSON-ready (``to_dict``): σ in ``noise_space`` units, minutes of wall time."""

    model_type: str
    trained_modules: list[str]
    trainable_parameters: int
    frozen_parameters: int
    noise_space: str
    sigma: dict[str, Any]
    seed: int
    lr: float
    batch: int
    warmup: int
    weight_decay: float
    cosine: bool
    images: int
    steps: int = 0
    minutes: float = 0.0
    stopped_by: str = ""
    loss: dict[str, Any] = field(default_factory=dict)
    validation: list[dict[str, float]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def distil(
    model: M,
    processor: Any,
    images: Sequence[Any],
    config: DistilConfig,
    *,
    validate: Validator | None = None,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> tuple[M, TrainingRecord]:
    """Train a student copy of ``model`` (left untouched, used as the teacher in eval mode) on
    ``images`` (PIL images or ``[H, W, 3]`` uint8 / [0, 1] arrays, drawn with replacement; any
    random-access sequence, so it may render on demand). Returns the student (eval mode) and
    the record; ``validate(student)`` runs every ``eval_every`` steps and at the end;
    ``on_step(steps_done, loss)`` after every step (progress; it may raise to stop the run)."""
    path = VisionPath.of(model)
    model.eval()
    student = make_student(model, path)
    record = _new_record(student, path, config, len(images))
    params = path.parameters(student)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    ip = image_processor_of(processor)
    losses: list[float] = []
    start = time.monotonic()
    while (stop := _stop_reason(config, len(losses), start)) is None:
        _set_lr(opt, config, len(losses))
        base, specs = draw_batch(images, config, gen)
        losses.append(train_step(model, student, path, ip, base, specs, opt, config.clip))
        if on_step:
            on_step(len(losses), losses[-1])
        _report(losses, config, log, validate, student, record)
    record.steps, record.stopped_by = len(losses), stop
    record.minutes = round((time.monotonic() - start) / 60, 2)
    record.loss = summarize_losses(losses)
    _validate(validate, student, record, log)
    return student, record


def make_student(model: M, path: VisionPath) -> M:
    """A deep copy of ``model`` in eval mode with only ``path``'s parameters trainable."""
    student = copy.deepcopy(model).eval()
    student.requires_grad_(False)
    for p in path.parameters(student):
        p.requires_grad_(True)
    return student


def image_processor_of(processor: Any) -> Any:
    """The processor's image processor (or ``processor`` itself when it is one)."""
    ip = getattr(processor, "image_processor", None) or processor
    if not callable(ip):
        raise ValueError(f"{type(processor).__name__} has no image processor")
    return ip


def draw_batch(
    images: Sequence[Any], config: DistilConfig, gen: torch.Generator
) -> tuple[list[torch.Tensor], list[CandidateSpec]]:
    """``config.batch`` images (``[H, W, 3]`` in [0, 1]) drawn with replacement, and one noise
    spec each: σ from the schedule, a 62-bit noise seed, all from ``gen``."""
    idx = torch.randint(len(images), (config.batch,), generator=gen).tolist()
    sigmas = config.schedule.draw(config.batch, gen)
    seeds = torch.randint(0, 2**62, (config.batch,), generator=gen).tolist()
    return [unit_image(images[i]) for i in idx], specs_for(sigmas, seeds, config.noise_space)


def train_step(
    teacher: nn.Module,
    student: nn.Module,
    path: VisionPath,
    image_processor: Any,
    base: Sequence[torch.Tensor],
    specs: Sequence[CandidateSpec],
    opt: torch.optim.Optimizer,
    clip: float | None,
) -> float:
    """One AdamW step on MSE(student features of the noisy images, teacher features of the
    clean ones); returns the loss (mean over tokens × features, in feature units²)."""
    with torch.no_grad():
        target = path.features(teacher, to_model(vision_inputs(image_processor, base), teacher))
    pred = path.features(student, to_model(vision_inputs(image_processor, base, specs), student))
    loss = nn.functional.mse_loss(pred.float(), target.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    opt.step()
    return float(loss.item())


@torch.no_grad()
def feature_mse(
    teacher: nn.Module,
    student: nn.Module,
    processor: Any,
    images: Sequence[Any],
    *,
    sigma: float,
    noise_space: ImageNoiseSpace = "pixel",
    seed: int = 0,
    batch: int = 64,
) -> float:
    """Mean squared distance between ``student``'s features of noisy ``images`` (σ in
    ``noise_space`` units; image ``i``'s noise seeded by ``seed`` and ``i``) and ``teacher``'s
    features of the clean ones: the distillation objective at one σ, e.g. on held-out images."""
    path, ip = VisionPath.of(teacher), image_processor_of(processor)
    total, count = 0.0, 0
    for lo in range(0, len(images), batch):
        base = [unit_image(images[i]) for i in range(lo, min(lo + batch, len(images)))]
        seeds = [candidate_seed(seed, lo + i, EVAL_STREAM) for i in range(len(base))]
        specs = specs_for(torch.full((len(base),), float(sigma)), seeds, noise_space)
        clean = path.features(teacher, to_model(vision_inputs(ip, base), teacher)).float()
        noisy = path.features(student, to_model(vision_inputs(ip, base, specs), student)).float()
        total, count = total + float(((noisy - clean) ** 2).sum()), count + clean.numel()
    return total / max(count, 1)


def summarize_losses(losses: Sequence[float], points: int = 20) -> dict[str, Any]:
    """First / last / min loss, means of the first and last 50 steps, and a ``points``-point curve
    (``[last step of the chunk, mean loss of the chunk]``)."""
    if not losses:
        return {}
    size = max(1, math.ceil(len(losses) / points))
    curve = [[min(i + size, len(losses)), _mean(losses[i : i + size])] for i in range(0, len(losses), size)]
    return {
        "first": losses[0],
        "last": losses[-1],
        "min": min(losses),
        "first_50_mean": _mean(losses[:50]),
        "last_50_mean": _mean(losses[-50:]),
        "curve": curve,
    }


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _new_record(student: nn.Module, path: VisionPath, config: DistilConfig, n_images: int) -> TrainingRecord:
    import transformers

    trainable = sum(p.numel() for p in path.parameters(student))
    return TrainingRecord(
        model_type=path.model_type,
        trained_modules=list(path.module_names),
        trainable_parameters=trainable,
        frozen_parameters=sum(p.numel() for p in student.parameters()) - trainable,
        noise_space=config.noise_space,
        sigma=asdict(config.schedule),
        seed=config.seed,
        lr=config.lr,
        batch=config.batch,
        warmup=config.warmup,
        weight_decay=config.weight_decay,
        cosine=config.cosine and config.steps is not None,
        images=n_images,
        versions={"torch": torch.__version__, "transformers": transformers.__version__},
    )


def _stop_reason(config: DistilConfig, step: int, start: float) -> str | None:
    if config.steps is not None and step >= config.steps:
        return "steps"
    if config.minutes is not None and time.monotonic() - start >= config.minutes * 60:
        return "minutes"
    return None


def _set_lr(opt: torch.optim.Optimizer, config: DistilConfig, step: int) -> None:
    """Linear warm-up, then constant or (with ``steps``) cosine down to a tenth of ``lr``."""
    factor = min(1.0, (step + 1) / max(config.warmup, 1))
    if config.cosine and config.steps:
        factor *= 0.1 + 0.45 * (1 + math.cos(math.pi * min(step / config.steps, 1.0)))
    for group in opt.param_groups:
        group["lr"] = config.lr * factor


def _report(
    losses: list[float],
    config: DistilConfig,
    log: Callable[[str], None] | None,
    validate: Validator | None,
    student: nn.Module,
    record: TrainingRecord,
) -> None:
    step = len(losses)
    if log and config.log_every and step % config.log_every == 0:
        log(f"step {step} loss {_mean(losses[-config.log_every :]):.5f}")
    if config.eval_every and step % config.eval_every == 0:
        record.steps = step
        _validate(validate, student, record, log)


def _validate(
    validate: Validator | None, student: nn.Module, record: TrainingRecord, log: Callable[[str], None] | None
) -> None:
    if validate is None or (record.validation and record.validation[-1]["step"] == record.steps):
        return
    with torch.no_grad():
        result = {"step": float(record.steps), **{k: float(v) for k, v in validate(student).items()}}
    record.validation.append(result)
    if log:
        log(f"validation {result}")
