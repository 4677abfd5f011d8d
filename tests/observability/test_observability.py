"""Observability against the real stack: the public /metrics is cheap (no database query) and says
nothing about tenants' work, which the admin token's /v1/admin/metrics does; one job through an API
process and a worker process, both tracing to one file with JSON logs, leaves a single trace (the
request, every task, the webhook attempt), log lines carrying its job_id, and the worker's own
metrics on its port."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.main import create_app
from shared.db import get_engine
from shared.tools.commands import wait_ready
from shared.tools.launcher import metrics_port
from shared.tools.servers import free_port
from tests.api.test_ops import metric
from tests.helpers import auth, post_job, wait_finished
from tests.webhooks.helpers import ScriptedReceiver

ROOT = Path(__file__).resolve().parents[2]


def statements_during(database_url, call):
    """What ``call`` returned, and the SQL statements it ran on the database."""
    seen = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    engine = get_engine(database_url)
    event.listen(engine, "before_cursor_execute", record)
    try:
        return call(), seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_public_metrics_run_no_query_and_work_in_flight_needs_the_admin_token(client, keys, settings):
    job_id = post_job(client, keys["alpha"]).json()["id"]  # no worker: its first round waits on the gpu lane
    response, queries = statements_during(settings.database_url, lambda: client.get("/metrics"))
    assert response.status_code == 200 and queries == []
    text = response.text
    assert sum(metric(text, "smoothguard_queue_depth", queue=q) for q in ("gpu", "gpu-audits")) == 1
    assert metric(text, "smoothguard_http_request_seconds_count", method="POST", route="/v1/jobs", status="202") == 1
    assert "smoothguard_jobs" not in text and "smoothguard_audits" not in text and job_id not in text

    assert client.get("/v1/admin/metrics").status_code == 404  # no admin token configured: no such route
    admin = TestClient(create_app(settings.model_copy(update={"admin_token": "ops-secret"})))
    assert admin.get("/v1/admin/metrics").status_code == 401
    assert admin.get("/v1/admin/metrics", headers=auth(keys["alpha"])).status_code == 401  # a tenant's key is not it
    work = admin.get("/v1/admin/metrics", headers=auth("ops-secret")).text
    assert metric(work, "smoothguard_jobs_in_flight", status="queued") == 1
    assert metric(work, "smoothguard_audits_in_flight", status="running") == 0


def test_without_an_exporter_no_tracing_sdk_is_loaded():
    """Spans are OpenTelemetry's no-op ones: no tracer provider, no SDK tracing, no instrumentation
    (redis-py loads the SDK's metrics module itself, when installed)."""
    code = (
        "import sys, api.main; from opentelemetry import trace; from shared.config import Settings; "
        "api.main.create_app(Settings(redis_url='redis://127.0.0.1:1/5')); "
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.instrumentation'))]; "
        "print(type(trace.get_tracer_provider()).__name__, loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ProxyTracerProvider []"


def test_each_worker_of_a_stack_gets_its_own_metrics_port():
    assert [metrics_port(n, 9100) for n in ("gpu", "cpu", "webhooks", "api")] == [9100, 9101, 9102, 9100]
    assert metrics_port("gpu", 0) == 0


def test_one_job_is_one_trace_from_the_request_to_the_webhook(stack, service_env, spawn_worker, keys, tmp_path):
    spans, port, worker_port = tmp_path / "spans.jsonl", free_port(), free_port()
    observed = {"SMOOTHGUARD_TRACE_FILE": str(spans), "SMOOTHGUARD_LOG_FORMAT": "json"}
    receiver = ScriptedReceiver()
    api_name = f"api-{port}"
    stack.spawn(api_name, ["api", "--port", str(port), "--workers", "1"], env=service_env | observed)
    spawn_worker(**observed, SMOOTHGUARD_METRICS_PORT=str(worker_port))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, stack)
        with httpx.Client(base_url=url, timeout=30) as api:
            assert api.post("/v1/webhooks", headers=auth(keys["alpha"]), json={"url": receiver.url}).status_code == 201
            job_id = post_job(api, keys["alpha"], callback_url=receiver.url).json()["id"]
            assert wait_finished(api, keys["alpha"], job_id)["status"] == "succeeded"
        records = wait_for_spans(spans, "run/webhooks.deliver")
        worker_metrics = httpx.get(f"http://127.0.0.1:{worker_port}/metrics").text
    finally:
        receiver.close()
        stack.stop_children([api_name])

    # one trace: the request's server span, each task's run span, the webhook attempt
    (request,) = [r for r in records if r["name"] == "POST /v1/jobs" and r["kind"] == "SERVER"]
    trace = [r for r in records if r["trace_id"] == request["trace_id"]]
    names = {r["name"] for r in trace}
    assert {"run/gpu.sample_round", "run/cpu.aggregate", "run/webhooks.deliver", "webhook.attempt"} <= names, names
    ids = {r["span_id"] for r in trace}
    assert all(r["parent_id"] in ids for r in trace if r is not request)  # every span's parent is in the file
    runs = [r for r in trace if r["name"] in ("run/gpu.sample_round", "run/cpu.aggregate", "run/webhooks.deliver")]
    assert all(r["attributes"]["smoothguard.job_id"] == job_id for r in runs)  # (the freed slot's cpu.dispatch too)
    (tenant,) = {r["attributes"].get("smoothguard.tenant_id") for r in runs}
    assert tenant is not None
    (attempt,) = [r for r in trace if r["name"] == "webhook.attempt"]
    assert attempt["attributes"]["smoothguard.status_code"] == 200 and attempt["service"] == "smoothguard-worker"

    # JSON log lines with the job's id: the submit (API), each task and the round (worker)
    logs = stack.root / "logs"
    worker_name = f"worker-{os.getpid()}-0"  # spawn_worker's name for this test's first worker
    lines = [json.loads(line) for name in (api_name, worker_name) for line in json_lines(logs / f"{name}.log")]
    mine = [line for line in lines if line.get("job_id") == job_id]
    messages = {line["message"] for line in mine}
    assert "job submitted" in messages and any(m.startswith("round 0 done") for m in messages), messages
    assert {line["tenant_id"] for line in mine} == {tenant}
    tasks = [line for line in mine if line["message"].startswith("task ")]
    assert {t["task"] for t in tasks} >= {"gpu.sample_round", "cpu.aggregate", "webhooks.deliver"}
    assert all(t["duration_s"] >= 0 and t["task_id"] and t["logger"] and t["time"] for t in tasks)

    # the worker's own metrics, from its port
    m = worker_metrics
    assert metric(m, "smoothguard_task_seconds_count", outcome="success", task="gpu.sample_round") >= 1
    assert metric(m, "smoothguard_task_seconds_count", outcome="success", task="webhooks.deliver") == 1
    assert metric(m, "smoothguard_queue_wait_seconds_count", task="cpu.aggregate") >= 1
    assert metric(m, "smoothguard_job_seconds_count", status="succeeded") == 1
    for name in ("smoothguard_rounds_total", "smoothguard_generations_total", "smoothguard_generated_tokens_total"):
        assert re.search(rf'^{name}{{model=".+"}} [1-9]', m, re.M), name


def wait_for_spans(path, name, timeout=30):
    """The spans written so far, once one named ``name`` is among them."""
    deadline = time.monotonic() + timeout
    while True:
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if any(r["name"] == name for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def json_lines(path):
    return [line for line in path.read_text().splitlines() if line.startswith("{")]
