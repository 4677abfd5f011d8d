"""Thumbnails for the report, embedded as data: URIs so the report needs no key and no network:
the clean and the attacked image, and the perturbation between them magnified; for audio, the
clean and the attacked clip to play (pure; bytes in)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.media.decode import load_audio

THUMB_SIDE = 112  # pixels, the longer side
JPEG_QUALITY = 80
MID_GREY = 0.5  # a zero perturbation's colour in the magnified view
CLIP_SECONDS = 10.0  # an embedded clip is cut here (16-bit PCM: 43 kB of data: URI per second at 16 kHz)


def _image(data: bytes) -> Image.Image | None:
    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _data_uri(image: Image.Image) -> str:
    image = image.copy()
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail(data: bytes) -> str | None:
    """A small JPEG of an image as a data: URI; None when the bytes are not an image (audio)."""
    image = _image(data)
    return None if image is None else _data_uri(image)


def perturbation(clean: bytes, attacked: bytes) -> str | None:
    """attacked − clean, magnified to fill the colour range around mid-grey (the largest change
    reaches black or white), as a data: URI; None when either is not an image."""
    a, b = _image(clean), _image(attacked)
    if a is None or b is None:
        return None
    if a.size != b.size:
        a = a.resize(b.size, Image.Resampling.BILINEAR)
    delta = np.asarray(b, dtype=np.float32) / 255 - np.asarray(a, dtype=np.float32) / 255
    peak = float(np.abs(delta).max()) or 1.0
    magnified = np.clip(MID_GREY + delta * (MID_GREY / peak), 0.0, 1.0)
    return _data_uri(Image.fromarray((magnified * 255).round().astype(np.uint8)))


def preview(data: bytes) -> str | None:
    """An image's thumbnail or an audio clip to play (``audio_clip``), as a data: URI; None for neither."""
    return thumbnail(data) or audio_clip(data)


def audio_clip(data: bytes) -> str | None:
    """The clip as 16-bit PCM WAV at its own rate, mono, cut at ``CLIP_SECONDS``, as a data: URI;
    None when the bytes are not audio. (Playback only: the audit's numbers come from the stored clip.)"""
    import soundfile as sf

    try:
        wave = load_audio(data)
    except Exception:  # soundfile raises its own error types
        return None
    samples = np.clip(wave.samples[: int(CLIP_SECONDS * wave.sample_rate)], -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, samples, wave.sample_rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
