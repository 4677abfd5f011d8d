"""Training inputs: σ drawn per image, and the image processor's inputs for clean or noisy images.

Noise goes exactly where the defense puts it (``shared.smoothing.noise.noisy_input``, one
``CandidateSpec`` per image, its noise drawn from its own seed):

- ``pixel``: on the ``[H, W, C]`` image in [0, 1], σ in those units, clipped to [0, 1], then the
  processor (``do_rescale=False``: resize, crop, mean/std normalisation);
- ``normalized``: on each image's ``pixel_values`` block, σ in the normalised units, not clipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from shared.smoothing.noise import noisy_input, on_unit_image
from shared.smoothing.types import CandidateSpec, ImageNoiseSpace

SigmaKind = Literal["sqrt_uniform", "uniform", "fixed"]
# σ_max by noise space: 0.55 on [0, 1] pixels; ≈ 0.55 / 0.27 (CLIP's std) in normalised units
DEFAULT_SIGMA_MAX: dict[str, float] = {"pixel": 0.55, "normalized": 2.0}


@dataclass(frozen=True)
class SigmaSchedule:
    """σ per training image, in the noise space's units: ``sqrt_uniform`` σ_max·√U (density
    rising linearly in σ, most weight near σ_max), ``uniform`` σ_max·U, or ``fixed`` σ_max;
    a ``clean_fraction`` of the images gets σ = 0."""

    sigma_max: float
    kind: SigmaKind = "sqrt_uniform"
    clean_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.sigma_max < 0 or not 0 <= self.clean_fraction <= 1:
            raise ValueError("sigma_max must be >= 0 and clean_fraction in [0, 1]")
        if self.kind not in ("sqrt_uniform", "uniform", "fixed"):
            raise ValueError(f"unknown sigma schedule {self.kind!r}")

    def draw(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``[n]`` float32 σ values drawn from ``gen``."""
        u = torch.rand(n, generator=gen)
        shape = {"sqrt_uniform": u.sqrt(), "uniform": u, "fixed": torch.ones(n)}[self.kind]
        keep = torch.rand(n, generator=gen) >= self.clean_fraction
        return shape * self.sigma_max * keep


def default_schedule(space: ImageNoiseSpace) -> SigmaSchedule:
    """σ_max·√U with the space's ``DEFAULT_SIGMA_MAX``."""
    return SigmaSchedule(DEFAULT_SIGMA_MAX[space])


def unit_image(image: Image.Image | np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` float32 in [0, 1] from a PIL image (any mode) or a uint8 / [0, 1] float array."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    scaled = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled))


def specs_for(sigmas: torch.Tensor, seeds: Sequence[int], space: ImageNoiseSpace) -> list[CandidateSpec]:
    """One defense-style candidate per image: σ from ``sigmas`` ``[B]``, noise seeded by ``seeds``."""
    return [
        CandidateSpec(i, 0, int(seed), float(s), space, float(s) == 0.0)
        for i, (s, seed) in enumerate(zip(sigmas.tolist(), seeds, strict=True))
    ]


def vision_inputs(image_processor: Any, images: Sequence[torch.Tensor], specs: Sequence[CandidateSpec] | None = None):
    """The image processor's tensors (``pixel_values`` ``[B, …]`` and, for LLaVA-NeXT, ``image_sizes``)
    for ``images`` (each ``[H, W, 3]`` in [0, 1]), each noised by its spec (clean where ``specs`` is None)."""
    spaces = {s.noise_space for s in specs or ()}
    if len(spaces) > 1:
        raise ValueError(f"one noise space per batch, got {sorted(spaces)}")
    on_image = bool(spaces) and on_unit_image(next(iter(spaces)))
    if specs is not None and on_image:
        images = [noisy_input(x, s) for x, s in zip(images, specs, strict=True)]
    out = image_processor(images=[x.numpy() for x in images], return_tensors="pt", do_rescale=False)
    batch = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
    if specs is not None and not on_image:
        px = batch["pixel_values"]
        batch["pixel_values"] = torch.stack([noisy_input(px[i], s) for i, s in enumerate(specs)])
    return batch


def to_model(batch: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``batch`` on the model's device, floating tensors in its dtype."""
    param = next(model.parameters())
    return {k: v.to(param.device, param.dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class ImageFiles(Sequence[Image.Image]):
    """Image files, opened on access as RGB (a large set costs no memory)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        if not self.paths:
            raise ValueError("no training images")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        with Image.open(self.paths[i]) as image:
            return image.convert("RGB")


class ImageFolder(ImageFiles):
    """The images under a folder (sorted by path)."""

    def __init__(self, root: Path):
        paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
        super().__init__(paths)
