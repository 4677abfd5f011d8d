"""Transient faults retry instead of failing jobs: the object store or the database cut off from
the workers (a TCP proxy in front of the real server, cut and restored) — the step is retried
with backoff and the job finishes normally once the service is back."""

import os
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from shared.faults import is_transient
from tests.faults import FlakyProxy
from tests.helpers import auth, post_job, wait_finished

pytestmark = pytest.mark.chaos
OUTAGE_S = 8.0
S3_OUTAGE_S = 20.0  # longer than the S3 client's own retries (~12 s), so the task itself must retry


def worker_logs(stack):
    return "".join(p.read_text() for p in (stack.root / "logs").glob(f"worker-{os.getpid()}-*.log"))


def start_ready(stack, spawn_worker, **env) -> int:
    """A GPU + CPU worker, once it has loaded its models (it touches no service before that, so a
    cut made earlier could pass unnoticed); how many "Retry in" the logs held by then (the logs of
    this process's earlier tests share the files)."""
    ready = worker_logs(stack).count("ready to serve")
    spawn_worker(("gpu", "cpu"), **env)
    deadline = time.monotonic() + 60
    while worker_logs(stack).count("ready to serve") == ready:
        assert time.monotonic() < deadline, "the worker did not get ready"
        time.sleep(0.1)
    return worker_logs(stack).count("Retry in")


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0] + f":{port}"))


def test_the_object_store_cut_off_mid_job_the_round_retries_and_the_job_succeeds(
    stack, service_env, spawn_worker, client, keys
):
    proxy = FlakyProxy(int(service_env["SMOOTHGUARD_S3_ENDPOINT"].rsplit(":", 1)[1]))
    try:
        retries = start_ready(stack, spawn_worker, SMOOTHGUARD_S3_ENDPOINT=f"127.0.0.1:{proxy.port}")
        proxy.down()  # the workers cannot read the media; the API (direct) stores it fine
        job = post_job(client, keys["alpha"], num_samples="4").json()
        time.sleep(S3_OUTAGE_S)
        assert client.get(f"/v1/jobs/{job['id']}", headers=auth(keys["alpha"])).json()["finished_at"] is None
        proxy.up()
        body = wait_finished(client, keys["alpha"], job["id"], timeout=120)
        assert body["status"] in ("succeeded", "abstained") and body["error"] is None, body  # answered, not failed
        assert body["samples_spent"] == 5 and proxy.accepted_while_down > 0
        assert worker_logs(stack).count("Retry in") > retries  # the task wrapper retried the step
    finally:
        proxy.close()


def test_the_database_cut_off_the_step_retries_and_the_job_succeeds(stack, service_env, spawn_worker, client, keys):
    db = service_env["SMOOTHGUARD_DATABASE_URL"]
    proxy = FlakyProxy(urlsplit(db).port)
    try:
        retries = start_ready(stack, spawn_worker, SMOOTHGUARD_DATABASE_URL=through(db, proxy.port))
        proxy.down()
        job = post_job(client, keys["alpha"], num_samples="4").json()  # the API's own connection is direct
        time.sleep(OUTAGE_S)
        proxy.up()
        body = wait_finished(client, keys["alpha"], job["id"], timeout=120)
        assert body["status"] in ("succeeded", "abstained") and body["samples_spent"] == 5, body
        assert proxy.accepted_while_down > 0 and worker_logs(stack).count("Retry in") > retries
    finally:
        proxy.close()


def test_what_counts_as_transient():
    from minio.error import S3Error
    from sqlalchemy.exc import OperationalError

    assert is_transient(OperationalError("select 1", {}, Exception("connection refused")))
    assert is_transient(ConnectionResetError())
    assert is_transient(S3Error(None, "SlowDown", "slow down", "r", "id", None))
    assert not is_transient(S3Error(None, "NoSuchKey", "gone", "r", "id", None))  # the request, not the server
    assert not is_transient(ValueError("bad image"))
