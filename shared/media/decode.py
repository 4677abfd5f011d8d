"""Decoding media into what the generators take: a PIL image or a mono float waveform."""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


@dataclass(frozen=True)
class Waveform:
    samples: np.ndarray  # [T] float32, mono
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def load_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def fit_side(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` area-averaged down so that its longest side is at most ``max_side`` (unchanged
    when it fits). Area averaging never lengthens a perturbation (its L2 norm only shrinks), so a
    radius certified on the result covers the original's perturbations of that norm too."""
    w, h = image.size
    if max(w, h) <= max_side:
        return image
    scale = max_side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)


def load_audio(data: bytes) -> Waveform:
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return Waveform(samples.mean(axis=1).astype(np.float32), int(rate))


def resample(audio: Waveform, rate: int) -> Waveform:
    if audio.sample_rate == rate:
        return audio
    from scipy.signal import resample_poly

    g = gcd(audio.sample_rate, rate)
    out = resample_poly(audio.samples, rate // g, audio.sample_rate // g).astype(np.float32)
    return Waveform(out, rate)


def load_media(path: Path) -> tuple[str, Image.Image | Waveform]:
    """``("image", PIL image)`` or ``("audio", Waveform)``, by content, not by file name."""
    data = path.read_bytes()
    try:
        return "image", load_image(data)
    except UnidentifiedImageError:
        pass
    try:
        return "audio", load_audio(data)
    except Exception as exc:  # soundfile raises its own error types
        raise ValueError(f"{path}: neither an image nor an audio file this service can decode") from exc
