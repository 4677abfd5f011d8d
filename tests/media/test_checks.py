"""Media checks bound the cost before decoding: an image's size comes from its header, an audio
file's duration from its container; truncated or corrupt data is refused with a reason."""

import io
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from shared.config import Settings
from shared.errors import Invalid
from shared.media.checks import check_media

SETTINGS = Settings(max_audio_seconds=60)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width``×``height`` but holds no pixel data: any attempt to decode it
    fails, so a refusal that names the size was made from the header alone."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buf, format="PNG")
    return buf.getvalue()


def audio(seconds: float, fmt: str, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (png_header_only(12000, 12000), "pixels; the limit is"),  # 17 KB in the field took +690 MB before
        (png_header_only(4000, 100), "aspect ratio"),
        (png_header_only(5000, 1000), "longest side"),
        (png_header_only(30000, 30000), "cannot be read"),  # past Pillow's bomb limit: refused at open
        (png(64, 64)[:-40], "truncated or corrupt"),
        (png_header_only(64, 64), "truncated or corrupt"),
        (audio(61, "FLAC"), "lasts 61.0 s"),
        (audio(1, "WAV", rate=4000), "sample rate 4000 Hz"),
        (b"\x00" * 64, "neither an image nor audio"),
    ],
    ids=["12000²", "40:1", "5000 wide", "bomb", "truncated", "no pixel data", "61 s", "4 kHz", "garbage"],
)
def test_bad_media_is_refused_with_a_reason(data, reason):
    with pytest.raises(Invalid, match=reason):
        check_media(data, SETTINGS)


def test_accepted_media_keep_their_own_content_type():
    assert check_media(png(64, 64), SETTINGS).content_type == "image/png"
    assert [check_media(audio(1, fmt), SETTINGS).content_type for fmt in ("WAV", "FLAC", "OGG")] == [
        "audio/wav",
        "audio/flac",
        "audio/ogg",
    ]
