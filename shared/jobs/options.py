"""The defense options a job is submitted with."""

from __future__ import annotations

NOISE_SPACES = {"image": ("normalized", "pixel"), "audio": ("waveform",)}


def noise_space_for(modality: str, requested: str | None) -> str:
    """The requested noise space if it applies to ``modality``; the paper's default if none asked."""
    allowed = NOISE_SPACES[modality]
    if requested is None:
        return allowed[0]
    if requested not in allowed:
        raise ValueError(f"noise_space {requested!r} does not apply to {modality}; use one of {list(allowed)}")
    return requested
