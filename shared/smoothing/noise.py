"""Seeded Gaussian noise and where it goes. Every candidate's seed derives from the job seed
and its index, and its noise is drawn on the CPU from that seed alone, so any candidate can be
regenerated bit-for-bit on any device (the model's arithmetic is another matter: same hardware
for that). ``noisy_input`` is the one placement, used by the defense's generators and by the
EOT attack alike, so the adaptive attack averages over exactly the defense's noise.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from shared.smoothing.types import CandidateSpec, NoiseSpace, SmoothConfig

if TYPE_CHECKING:  # torch loads only where noise is drawn, not where rounds are planned
    import torch

DEFENSE_STREAM = "smoothguard"


def candidate_seed(job_seed: int, index: int, stream: str = DEFENSE_STREAM) -> int:
    """A 63-bit seed for candidate ``index`` of the job seeded with ``job_seed``. Another
    ``stream`` (the EOT attack's) gives seeds unrelated to the defense's for the same numbers."""
    digest = hashlib.sha256(f"{stream}:{job_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def plan_round(config: SmoothConfig, round_index: int, noise_space: NoiseSpace | None = None) -> list[CandidateSpec]:
    """The candidates of round ``round_index``: the clean input first in round 0 (if included),
    then noisy copies with consecutive indices (``noisy_draws``). Empty once the budget is spent."""
    space = noise_space or config.noise_space
    draws = noisy_draws(config, round_index)
    offset = 1 if config.include_clean else 0
    specs = []
    if round_index == 0 and config.include_clean and draws:
        specs.append(CandidateSpec(0, 0, None, 0.0, space, True))
    for k in draws:
        index = k + offset
        specs.append(CandidateSpec(index, round_index, candidate_seed(config.seed, index), config.sigma, space, False))
    return specs


def noisy_draws(config: SmoothConfig, round_index: int) -> range:
    """Which noisy draws (0-based, in job order) round ``round_index`` makes: ``num_samples`` in
    one round, or ``round_size`` per round when adaptive. With ``certify`` round 0 makes the
    ``certify_n0`` selection draws and the estimation draws follow from round 1, so the two sets
    have distinct indices and therefore distinct seeds."""
    per_round = config.round_size if config.adaptive else config.num_samples
    if not config.certify:
        first, end = round_index * per_round, config.num_samples
    elif round_index == 0:
        return range(config.certify_n0)
    else:
        first, end = config.certify_n0 + (round_index - 1) * per_round, config.certify_n0 + config.num_samples
    return range(first, min(first + per_round, end))


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


def noisy_input(x: torch.Tensor, spec: CandidateSpec) -> torch.Tensor:
    """One candidate's input: ``x + σ·ε`` (``gaussian`` of ``x``'s shape; ``x`` itself for the
    clean candidate), placed by ``spec.noise_space``:

    - ``normalized``: ``x`` is the processor's ``pixel_values`` block of one image, σ in its
      mean/std-normalised units; not clipped (the paper's placement);
    - ``pixel``: ``x`` is the image ``[H, W, C]`` in [0, 1], σ in those units; clipped to [0, 1];
    - ``waveform``: ``x`` is the raw float waveform ``[T]``, σ in amplitude units; not clipped.

    Differentiable in ``x`` (the EOT attack's gradient flows through it)."""
    noisy = x + gaussian(x.shape, spec, dtype=x.dtype, device=x.device)
    return noisy.clamp(0.0, 1.0) if on_unit_image(spec.noise_space) else noisy


def on_unit_image(space: NoiseSpace) -> bool:
    """Whether ``space``'s noise goes on the [0, 1] image, before the processor (and is clipped)."""
    return space == "pixel"
