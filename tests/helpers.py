"""Helpers of the API tests."""

import time

from shared.config import DEMO_IMAGE


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def post_job(client, key, data=None, **form):
    files = {"file": ("x.png", data if data is not None else DEMO_IMAGE.read_bytes(), "image/png")}
    return client.post(
        "/v1/jobs", headers=auth(key), files=files, data={"prompt": "What colour is the circle?", **form}
    )


def wait_finished(client, key, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while (body := client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json())["finished_at"] is None:
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    return body
