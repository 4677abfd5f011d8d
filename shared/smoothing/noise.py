"""Seeded Gaussian noise. Every candidate's seed derives from the job seed and its index, and
its noise is drawn on the CPU from that seed alone, so any candidate can be regenerated
bit-for-bit on any device (the model's arithmetic is another matter: same hardware for that).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from shared.smoothing.types import CandidateSpec, SmoothConfig

if TYPE_CHECKING:  # torch loads only where noise is drawn, not where rounds are planned
    import torch


def candidate_seed(job_seed: int, index: int) -> int:
    """A 63-bit seed for candidate ``index`` of the job seeded with ``job_seed``."""
    digest = hashlib.sha256(f"smoothguard:{job_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def plan_round(config: SmoothConfig, round_index: int, noise_space: str | None = None) -> list[CandidateSpec]:
    """The candidates of round ``round_index``: the clean input first in round 0 (if included),
    then noisy copies with consecutive indices. Empty once the noisy budget is spent."""
    space = noise_space or config.noise_space
    per_round = config.round_size if config.adaptive else config.num_samples
    first_noisy = round_index * per_round
    count = max(0, min(per_round, config.num_samples - first_noisy))
    offset = 1 if config.include_clean else 0
    specs = []
    if round_index == 0 and config.include_clean and count:
        specs.append(CandidateSpec(0, 0, None, 0.0, space, True))  # type: ignore[arg-type]
    for k in range(first_noisy, first_noisy + count):
        index = k + offset
        specs.append(CandidateSpec(index, round_index, candidate_seed(config.seed, index), config.sigma, space, False))  # type: ignore[arg-type]
    return specs


def gaussian(
    shape: tuple[int, ...] | torch.Size,
    spec: CandidateSpec,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """σ·N(0, I) of ``shape`` for ``spec`` (zeros for the clean candidate), drawn on the CPU;
    float32 unless ``dtype`` says otherwise."""
    import torch

    dtype = dtype or torch.float32
    if spec.is_clean or spec.seed is None or spec.sigma == 0:
        return torch.zeros(shape, dtype=dtype, device=device)
    gen = torch.Generator(device="cpu").manual_seed(spec.seed)
    noise = torch.randn(shape, generator=gen, dtype=torch.float32) * spec.sigma
    return noise.to(dtype=dtype, device=device)


def noisy_tensor(x: torch.Tensor, spec: CandidateSpec) -> torch.Tensor:
    """``x + σ·ε`` with no clipping — the paper's placement on normalised ``pixel_values``."""
    return x + gaussian(x.shape, spec, dtype=x.dtype, device=x.device)


def noisy_pixels(image: np.ndarray, spec: CandidateSpec) -> np.ndarray:
    """Pixel-space noise: ``image`` is ``[H, W, C]`` float in [0, 1]; the result is clipped to [0, 1]."""
    noise = gaussian(image.shape, spec).numpy()
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


def noisy_waveform(wave: np.ndarray, spec: CandidateSpec) -> np.ndarray:
    """Waveform noise: ``wave`` is ``[T]`` float; not clipped (the feature extractor takes floats)."""
    return (wave + gaussian(wave.shape, spec).numpy()).astype(np.float32)
