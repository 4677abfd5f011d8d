"""Request bodies are bounded as they arrive: a declared Content-Length over the limit is refused
before anything is read, a chunked body is cut off at the limit, and nothing is stored."""

import asyncio

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.body_limit import BodyLimit
from api.main import create_app
from shared.config import DEMO_IMAGE
from shared.db import session_scope
from shared.models import Media
from tests.helpers import auth

LIMIT = 64 * 1024  # the test deployment's max_upload_bytes


@pytest.fixture()
def small_client(settings):
    return TestClient(create_app(settings.model_copy(update={"max_upload_bytes": LIMIT})))


def media_rows(database):
    with session_scope(database) as s:
        return s.scalar(select(func.count()).select_from(Media))


def chunks(total, size=64 * 1024):
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


def test_a_declared_length_over_the_limit_is_refused_before_reading(small_client, keys, settings):
    headers = auth(keys["alpha"]) | {
        "Content-Length": str(50 * 2**20),
        "Content-Type": "multipart/form-data; boundary=b",
    }
    r = small_client.post("/v1/jobs", headers=headers, content=b"")
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert "over" in r.json()["detail"] and media_rows(settings.database_url) == 0


def test_a_chunked_body_is_cut_off_at_the_limit(small_client, keys, settings):
    body = chunks(8 * 2**20)  # no Content-Length: sent chunked
    headers = auth(keys["alpha"]) | {"Content-Type": "multipart/form-data; boundary=b"}
    r = small_client.post("/v1/media", headers=headers, content=body)
    assert r.status_code == 413 and r.json()["status"] == 413
    assert media_rows(settings.database_url) == 0


def test_bodies_under_the_limit_pass_and_datasets_have_their_own_limit(small_client, keys, settings):
    files = {"file": ("x.png", DEMO_IMAGE.read_bytes(), "image/png")}
    assert small_client.post("/v1/media", headers=auth(keys["alpha"]), files=files).status_code == 201
    big = {"file": ("set.zip", b"x" * (2 * 2**20), "application/zip")}  # over the upload limit, not the archive one
    r = small_client.post("/v1/datasets", headers=auth(keys["alpha"]), files=big, data={"format": "pope"})
    assert r.status_code == 422  # reached the route: not an archive


def test_a_malformed_content_length_is_a_400_and_the_app_never_runs():
    sent = []

    async def app(scope, receive, send):
        raise AssertionError("the app must not run")

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": "/v1/jobs", "headers": [(b"content-length", b"lots")]}
    asyncio.run(BodyLimit(app, lambda path: 100)(scope, receive, send))
    assert sent[0]["status"] == 400
