"""The issue's table of inputs that once escaped as 500 text/plain (or cost gigabytes), as one
parametrised test: each is a 4xx problem+json and stores nothing in the database or the bucket."""

import io
import struct
import zlib

import pytest
from PIL import Image
from sqlalchemy import func, select

from shared.config import DEMO_IMAGE
from shared.db import session_scope
from shared.models import Job, Media, WebhookEndpoint
from tests.helpers import auth, post_job


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width × height`` (a decompression bomb's header)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.open(DEMO_IMAGE).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


def job(data=None, **form):
    return lambda client, key: post_job(client, key, data=data, **form)


def raw(path, body, content_type="application/json"):
    return lambda client, key: client.post(path, headers=auth(key) | {"content-type": content_type}, content=body)


CASES = {
    "empty file": (job(b""), 422),
    "not media": (job(b"definitely not media"), 422),
    "truncated PNG": (job(DEMO_IMAGE.read_bytes()[:300]), 422),
    "truncated JPEG": (job(jpeg()[:400]), 422),
    "PNG over Pillow's bomb limit": (job(png_claiming(20_000, 20_000)), 422),
    "PNG of 12000² (header)": (job(png_claiming(12_000, 12_000)), 422),
    "1×30000 PNG (aspect ratio)": (job(png_claiming(1, 30_000)), 422),
    "NUL in the prompt": (job(prompt="What colour\x00 is it?"), 422),
    "NUL in the callback URL": (job(callback_url="http://127.0.0.1/\x00hook"), 422),
    "10,000 answers": (job(answers=",".join(f"a{i}" for i in range(10_000))), 422),
    "JSON nested 100k deep": (raw("/v1/jobs", b"[" * 100_000 + b"]" * 100_000), 422),
    "invalid UTF-8 JSON": (raw("/v1/jobs", b'{"prompt": "\xff\xfe"}'), 422),
    "NUL in a webhook URL": (raw("/v1/webhooks", b'{"url": "http://127.0.0.1/\\u0000h"}'), 422),
    "CR/LF in a webhook URL": (raw("/v1/webhooks", b'{"url": "http://127.0.0.1/h\\r\\nX-Evil: 1"}'), 422),
    "sigma < 0": (job(sigma="-1"), 422),
    "num_samples over the bound": (job(num_samples="100000"), 422),
    "unknown model": (job(model="/etc/passwd"), 422),
    "not a dataset archive": (
        lambda client, key: client.post(
            "/v1/datasets",
            headers=auth(key),
            files={"file": ("x.zip", b"not a zip", "application/zip")},
            data={"format": "pope"},
        ),
        422,
    ),
}


def stored(settings, store):
    with session_scope(settings.database_url) as s:
        rows = tuple(s.scalar(select(func.count(m.id))) for m in (Job, Media, WebhookEndpoint))
    return rows, len(list(store.client.list_objects(store.bucket, recursive=True)))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_problem_and_stores_nothing(client, keys, settings, store, case):
    send, status = CASES[case]
    before = stored(settings, store)
    r = send(client, keys["alpha"])
    assert r.status_code == status, (case, r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in r.text
    if case != "unknown model":  # that 422 names the known model ids, which may be local paths
        assert "/work/" not in r.text  # no server paths
    assert stored(settings, store) == before
