"""Validation of submitted media before anything is stored: the type is sniffed from the bytes,
images are decoded and bounded in bytes and pixels, audio in bytes, duration and sample rate."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from shared.config import Settings
from shared.errors import Invalid
from shared.media.decode import load_audio, load_image

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}


@dataclass(frozen=True)
class CheckedMedia:
    modality: str  # image | audio
    content_type: str


def check_media(data: bytes, s: Settings) -> CheckedMedia:
    """Raise ``Invalid`` with a user-facing reason, or describe the media."""
    if not data:
        raise Invalid("the file is empty")
    if len(data) > s.max_upload_bytes:
        raise Invalid(f"the file is {len(data)} bytes; the limit is {s.max_upload_bytes}")
    try:
        fmt = Image.open(io.BytesIO(data)).format
    except UnidentifiedImageError:
        fmt = None
    if fmt is not None:
        if fmt not in IMAGE_TYPES:
            raise Invalid(f"image format {fmt} is not accepted; use one of {sorted(IMAGE_TYPES)}")
        image = load_image(data)
        if image.width * image.height > s.max_image_pixels:
            raise Invalid(f"the image has {image.width * image.height} pixels; the limit is {s.max_image_pixels}")
        return CheckedMedia("image", IMAGE_TYPES[fmt])
    try:
        audio = load_audio(data)
    except Exception as exc:  # soundfile raises its own types for anything it can't read
        raise Invalid("the file is neither an image nor audio this service can decode") from exc
    if audio.seconds > s.max_audio_seconds:
        raise Invalid(f"the audio lasts {audio.seconds:.1f} s; the limit is {s.max_audio_seconds} s")
    if not 8000 <= audio.sample_rate <= 48000:
        raise Invalid(f"sample rate {audio.sample_rate} Hz is outside 8000–48000 Hz")
    return CheckedMedia("audio", "audio/wav")
