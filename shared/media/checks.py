"""Validation of submitted media before anything is stored, with the cost bounded before any
decoding: the type is sniffed from the bytes, an image's size read from its header (pixels,
longest side, aspect ratio) before its pixels are decoded, an audio file's frames and sample
rate read from its container before its samples are."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from shared.config import Settings
from shared.errors import Invalid

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}
AUDIO_TYPES = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg"}


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
    image = open_image(data)
    if image is not None:
        return check_image(image, s)
    return check_audio(data, s)


def open_image(data: bytes) -> Image.Image | None:
    """The image with only its header read, or None when the bytes are no image Pillow knows."""
    try:
        with warnings.catch_warnings():  # sizes are bounded here, before any decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return None
    except (Image.DecompressionBombError, OSError, ValueError) as exc:
        raise Invalid(f"the image cannot be read: {exc}") from exc


def check_image(image: Image.Image, s: Settings) -> CheckedMedia:
    """Bounds from the header first; then a full decode (truncated or corrupt data is refused)."""
    if image.format not in IMAGE_TYPES:
        raise Invalid(f"image format {image.format} is not accepted; use one of {sorted(IMAGE_TYPES)}")
    width, height = image.size
    if width * height > s.max_image_pixels:
        raise Invalid(f"the image has {width * height} pixels; the limit is {s.max_image_pixels}")
    if max(width, height) > s.max_image_side:
        raise Invalid(f"the image is {width}×{height}; the longest side may be {s.max_image_side}")
    if max(width, height) > s.max_aspect_ratio * max(1, min(width, height)):
        raise Invalid(f"the image is {width}×{height}; the aspect ratio may be at most {s.max_aspect_ratio:g}:1")
    try:
        image.load()
    except (Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise Invalid(f"the image data is truncated or corrupt: {exc}") from exc
    return CheckedMedia("image", IMAGE_TYPES[image.format])


def check_audio(data: bytes, s: Settings) -> CheckedMedia:
    """Duration and sample rate from the container's header; then a full decode."""
    import soundfile as sf

    from shared.media.decode import load_audio

    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:  # soundfile raises its own types for anything it can't read
        raise Invalid("the file is neither an image nor audio this service can decode") from exc
    if info.format not in AUDIO_TYPES:
        raise Invalid(f"audio format {info.format} is not accepted; use one of {sorted(AUDIO_TYPES)}")
    seconds = info.frames / info.samplerate if info.samplerate else float("inf")
    if seconds > s.max_audio_seconds:
        raise Invalid(f"the audio lasts {seconds:.1f} s; the limit is {s.max_audio_seconds} s")
    if not 8000 <= info.samplerate <= 48000:
        raise Invalid(f"sample rate {info.samplerate} Hz is outside 8000–48000 Hz")
    try:
        load_audio(data)
    except Exception as exc:
        raise Invalid(f"the audio data is truncated or corrupt: {exc}") from exc
    return CheckedMedia("audio", AUDIO_TYPES[info.format])
