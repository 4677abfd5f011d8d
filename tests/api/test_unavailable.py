"""A backing service down answers 503 problem+json with Retry-After, not a 500; and a submit whose
job was committed but could not be enqueued is enqueued by its retry (same Idempotency-Key)."""

import time

from fastapi.testclient import TestClient

from api.main import create_app
from shared.config import DEMO_IMAGE
from tests.helpers import auth, wait_finished

DEAD = "127.0.0.1:1"  # nothing listens on port 1


def submit(client, key, idempotency_key):
    files = {"file": ("x.png", DEMO_IMAGE.read_bytes(), "image/png")}
    headers = auth(key) | {"Idempotency-Key": idempotency_key}
    data = {"prompt": "What colour is the circle?", "num_samples": "3"}
    return client.post("/v1/jobs", headers=headers, files=files, data=data)


def test_queue_down_at_submit_is_a_503_and_the_retry_enqueues_the_job(settings, keys, client, worker):
    key = keys["alpha"]
    down = TestClient(create_app(settings.model_copy(update={"redis_url": f"redis://{DEAD}/0"})))
    started = time.monotonic()
    r = submit(down, key, "retry-me")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.headers["Retry-After"] == "5" and "unavailable" in r.json()["detail"]
    assert time.monotonic() - started < 30
    # the job row was committed before the send failed: the client's retry finds and enqueues it
    again = submit(client, key, "retry-me")
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    body = wait_finished(client, key, again.json()["id"], timeout=120)
    assert body["status"] in ("succeeded", "abstained") and body["samples_spent"] == 4


def test_database_down_is_a_503_with_retry_after(settings, keys):
    down = TestClient(create_app(settings.model_copy(update={"database_url": f"postgresql://postgres@{DEAD}/x"})))
    r = down.get("/v1/jobs", headers=auth(keys["alpha"]))
    assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
    assert r.json()["title"] == "Service Unavailable"
