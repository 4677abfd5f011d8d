"""The REST API against real PostgreSQL, Redis and S3, and — end to end — a real Celery worker."""

import io
import socket
import time
from importlib import metadata

import pytest
from sqlalchemy import func, select

from shared.db import session_scope
from shared.models import Job, Media
from tests.helpers import auth, post_job


def counts(settings):
    with session_scope(settings.database_url) as s:
        return s.scalar(select(func.count(Job.id))), s.scalar(select(func.count(Media.id)))


def test_submit_returns_202_with_location_and_stores_media_once(client, keys, settings, store):
    r1 = post_job(client, keys["alpha"])
    r2 = post_job(client, keys["alpha"])
    assert r2.status_code == 202, r2.text
    assert r1.status_code == 202 and r1.headers["Location"] == f"/v1/jobs/{r1.json()['id']}"
    assert r1.headers["Retry-After"] and r1.json()["status"] == "queued"
    assert counts(settings) == (2, 1)


def test_tenants_cannot_see_each_others_jobs(client, keys):
    job_id = post_job(client, keys["alpha"]).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=auth(keys["alpha"])).status_code == 200
    other = client.get(f"/v1/jobs/{job_id}", headers=auth(keys["beta"]))
    assert other.status_code == 404 and other.headers["content-type"] == "application/problem+json"
    assert client.get(f"/v1/jobs/{job_id}/samples", headers=auth(keys["beta"])).status_code == 404


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sg_wrong"}, {"Authorization": "Basic x"}])
def test_missing_or_bad_keys_are_401(client, keys, headers):
    r = client.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=headers)
    assert r.status_code == 401 and r.json()["status"] == 401


def test_end_to_end_through_a_real_worker(client, keys, worker):
    job_id = post_job(client, keys["alpha"], seed="3").json()["id"]
    deadline = time.monotonic() + 180
    while (body := client.get(f"/v1/jobs/{job_id}", headers=auth(keys["alpha"])).json())["finished_at"] is None:
        assert time.monotonic() < deadline, body
        time.sleep(0.3)
    assert body["status"] == "succeeded" and body["answer"] == "red" and body["samples_spent"] == 11
    assert body["consensus"]["total"] == 10 and body["refusal"]["total"] == 10 and body["refusal"]["refused"] is False
    samples = client.get(f"/v1/jobs/{job_id}/samples", headers=auth(keys["alpha"])).json()
    assert len(samples) == 11 and sum(s["selected"] for s in samples) == 1 and samples[0]["is_clean"]
    # provenance: where the worker generated the candidates (the demo checkpoint is a local folder: no commit)
    assert body["generated_on"] == [
        {
            "device": "cpu",
            "dtype": "float32",
            "revision": None,
            "torch": metadata.version("torch"),
            "transformers": metadata.version("transformers"),
            "host": socket.gethostname(),
        }
    ]


def test_image_pixel_bound(client, keys, settings, monkeypatch):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (300, 300)).save(buf, format="PNG")
    client.app.state.settings = settings.model_copy(update={"max_image_pixels": 10_000})
    r = post_job(client, keys["alpha"], data=buf.getvalue())
    assert r.status_code == 422 and "pixels" in r.json()["detail"]


def test_the_api_process_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, api.main, api.routes.jobs, workers.celery_app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cancel_a_queued_job_ends_it_and_twice_is_409(client, keys):
    job_id = post_job(client, keys["alpha"]).json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(keys["alpha"]))
    assert r.status_code == 202 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(keys["alpha"]))
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(keys["beta"])).status_code == 404


def test_cancel_stops_the_remaining_rounds_of_a_running_job(client, keys, worker):
    # σ=4 keeps the vote undecided for several rounds (budget 200 = up to 25 rounds of 8)
    job_id = post_job(client, keys["alpha"], adaptive="true", num_samples="200", sigma="4", seed="2").json()["id"]
    url, h = f"/v1/jobs/{job_id}", auth(keys["alpha"])
    deadline = time.monotonic() + 120
    while client.get(url, headers=h).json()["rounds_done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client.post(f"{url}/cancel", headers=h)
    while (body := client.get(url, headers=h).json())["finished_at"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert body["status"] == "cancelled" and body["rounds_done"] < 10
