"""Validation of submitted media before anything is stored: the type is sniffed from the bytes,
images are decoded and bounded in bytes and pixels, audio in bytes, duration and sample rate."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from dataclasses import asdict, dataclass

from PIL import Image, UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.media import load_audio, load_image
from shared.models import Job
from shared.smoothing.types import SmoothConfig

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp"}


@dataclass(frozen=True)
class CheckedMedia:
    modality: str  # image | audio
    content_type: str


def check_media(data: bytes, s: Settings) -> CheckedMedia:
    """Raise ``ValueError`` with a user-facing reason, or describe the media."""
    if not data:
        raise ValueError("the file is empty")
    if len(data) > s.max_upload_bytes:
        raise ValueError(f"the file is {len(data)} bytes; the limit is {s.max_upload_bytes}")
    try:
        fmt = Image.open(io.BytesIO(data)).format
    except UnidentifiedImageError:
        fmt = None
    if fmt is not None:
        if fmt not in IMAGE_TYPES:
            raise ValueError(f"image format {fmt} is not accepted; use one of {sorted(IMAGE_TYPES)}")
        image = load_image(data)
        if image.width * image.height > s.max_image_pixels:
            raise ValueError(f"the image has {image.width * image.height} pixels; the limit is {s.max_image_pixels}")
        return CheckedMedia("image", IMAGE_TYPES[fmt])
    try:
        audio = load_audio(data)
    except Exception as exc:  # soundfile raises its own types for anything it can't read
        raise ValueError("the file is neither an image nor audio this service can decode") from exc
    if audio.seconds > s.max_audio_seconds:
        raise ValueError(f"the audio lasts {audio.seconds:.1f} s; the limit is {s.max_audio_seconds} s")
    if not 8000 <= audio.sample_rate <= 48000:
        raise ValueError(f"sample rate {audio.sample_rate} Hz is outside 8000–48000 Hz")
    return CheckedMedia("audio", "audio/wav")


NOISE_SPACES = {"image": ("normalized", "pixel"), "audio": ("waveform",)}


def noise_space_for(modality: str, requested: str | None) -> str:
    """The requested noise space if it applies to ``modality``; the paper's default if none asked."""
    allowed = NOISE_SPACES[modality]
    if requested is None:
        return allowed[0]
    if requested not in allowed:
        raise ValueError(f"noise_space {requested!r} does not apply to {modality}; use one of {list(allowed)}")
    return requested


class IntakeError(ValueError):
    """A submission refused with an HTTP status (422 bad input, 404 unknown media, 409 in flight)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def request_hash(*, media_sha256: str, prompt: str, model: str, config: SmoothConfig, callback_url: str | None) -> str:
    """A submission's fingerprint: the same Idempotency-Key with another body is refused."""
    body = {"media": media_sha256, "prompt": prompt, "model": model, "params": asdict(config),
            "callback_url": callback_url}  # fmt: skip
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def check_options(s: Settings, *, model: str | None, num_samples: int, max_new_tokens: int) -> str:
    """The deployment's bounds on options; returns the model to use."""
    known = s.model_ids()
    chosen = model or s.model
    if chosen not in known:
        raise IntakeError(422, f"unknown model {chosen!r}; known models: {', '.join(known)}")
    if num_samples > s.max_num_samples:
        raise IntakeError(422, f"num_samples is {num_samples}; the limit is {s.max_num_samples}")
    if max_new_tokens > s.max_new_tokens:
        raise IntakeError(422, f"max_new_tokens is {max_new_tokens}; the limit is {s.max_new_tokens}")
    return chosen


def claim_idempotency_key(session: Session, tenant_id: uuid.UUID, key: str) -> None:
    """Hold the key for this transaction; 409 while another request with it is being processed."""
    got = session.scalar(select(func.pg_try_advisory_xact_lock(func.hashtextextended(f"{tenant_id}:{key}", 0))))
    if not got:
        raise IntakeError(409, f"a request with Idempotency-Key {key!r} is still in progress; retry shortly")


def replay(session: Session, tenant_id: uuid.UUID, key: str | None, request_hash: str) -> Job | None:
    """The job an earlier request with this key made (same body), or None for a new key."""
    if key is None:
        return None
    claim_idempotency_key(session, tenant_id, key)
    job = session.scalar(select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key))
    if job is not None and job.request_hash != request_hash:
        raise IntakeError(422, f"Idempotency-Key {key!r} was used with a different request body")
    return job
