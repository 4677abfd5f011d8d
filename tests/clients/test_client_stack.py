"""The client against the real embedded stack (PostgreSQL, Redis, S3, a worker process): media, jobs
(multipart and JSON), samples, cancel, webhook endpoints and events, a job's and an audit's webhooks
verified by the ``standardwebhooks`` package itself, a dataset upload, an audit (created once for
two requests with one Idempotency-Key) followed to its report — and ``smoothguard audit status``
gating on that audit (JUnit, exit code, the table without --wait)."""

import csv
import io
import json
import re
import time
import xml.etree.ElementTree as ET

import pytest
import standardwebhooks
from smoothguard_client import ApiError, Backoff, DatasetInvalid, SmoothGuard, WebhookVerificationError, verify_webhook

from shared.config import DEMO_IMAGE
from shared.tools import audit_cli, audit_gate
from shared.tools.cli import main
from shared.tools.receiver import Receiver
from tests.tools.test_audit_cli import pope_folder

PROMPT = "What colour is the circle?"
FAST = Backoff(initial=0.1, factor=1.5, maximum=0.5)  # the test looks more often than Retry-After asks
SPEC = {
    "dataset": {"format": "shapes", "seed": 7, "count": 1},  # one image, two questions
    "attacks": [{"name": "pgd", "steps": 2}],
    "defense": {"sigmas": [0.1], "num_samples": 2, "max_new_tokens": 4},
}


def test_the_client_on_the_stack(client, keys, spawn_worker, tmp_path, capsys, monkeypatch):
    spawn_worker(("gpu", "cpu", "audits", "webhooks"))
    sg = SmoothGuard(api_key=keys["alpha"], http=client)
    with Receiver() as receiver:
        endpoint = sg.webhooks.create(receiver.url)
        spec = SPEC | {"callback_url": receiver.url}
        audit = sg.audits.submit(spec, idempotency_key="ci-run-1")  # first: it runs while the jobs below do
        assert sg.audits.submit(spec, idempotency_key="ci-run-1").id == audit.id  # a retried create: no second audit
        job_and_its_webhook(sg, receiver, endpoint)
        dataset_upload(sg, tmp_path)
        updates = []
        audit = sg.audits.wait(audit.id, timeout=300, backoff=FAST, on_update=updates.append)
        (hook,) = hooks(receiver, "audit.completed", 1)
    assert standardwebhooks.Webhook(endpoint.secret).verify(hook.body, hook.headers)["data"]["audit_id"] == str(
        audit.id
    )
    assert audit.status == "succeeded" and audit.summary["attacks"] == ["pgd"], audit.error
    assert updates[-1] == audit and all(u.progress.total == 2 for u in updates)
    rows = list(csv.DictReader(io.StringIO(sg.audits.report(audit.id, "csv").decode())))
    assert len(rows) == 2 * 2 * 2  # items × (clean, pgd) × (undefended, σ)
    assert json.loads(sg.audits.report(audit.id, "json"))["summary"]["n_items"] == 2
    assert sg.audits.download_report(audit.id, tmp_path / "report.html").read_text().lstrip().startswith("<!")
    with pytest.raises(ApiError) as finished:
        sg.audits.cancel(audit.id)
    assert finished.value.status == 409
    gate_on_the_cli(audit, keys["alpha"], tmp_path, capsys, monkeypatch, client)


def hooks(receiver, kind, count, timeout=60):
    """The first ``count`` webhooks of type ``kind`` the receiver got (waiting for them)."""
    deadline = time.monotonic() + timeout
    while len(got := [h for h in list(receiver.received) if h.json["type"] == kind]) < count:
        assert time.monotonic() < deadline, [h.json["type"] for h in receiver.received]
        time.sleep(0.05)
    return got[:count]


def job_and_its_webhook(sg, receiver, endpoint):
    assert endpoint.secret.startswith("whsec_") and sg.webhooks.list()[0].secret is None
    media = sg.media.upload(DEMO_IMAGE)
    assert sg.media.get(media.id).sha256 == media.sha256
    by_media = sg.jobs.submit(media_id=media.id, prompt=PROMPT, seed=3, callback_url=receiver.url)
    by_file = sg.jobs.submit(DEMO_IMAGE, prompt=PROMPT, seed=3)
    done = sg.jobs.wait(by_media.id, timeout=120, backoff=FAST)
    assert done.status == "succeeded" and done.answer == "red"
    assert sg.jobs.wait(by_file.id, timeout=120, backoff=FAST).answer == "red"
    samples = sg.jobs.samples(done.id)
    assert len(samples) == done.samples_spent and sum(s.selected for s in samples) == 1
    with pytest.raises(ApiError) as finished:
        sg.jobs.cancel(done.id)
    assert finished.value.status == 409 and finished.value.detail
    (hook,) = hooks(receiver, "job.completed", 1)
    payload = standardwebhooks.Webhook(endpoint.secret).verify(hook.body, hook.headers)  # the package, not ours
    assert payload["type"] == "job.completed" and payload["data"]["job_id"] == str(done.id)
    assert verify_webhook(hook.body, hook.headers, endpoint.secret) == payload
    with pytest.raises(WebhookVerificationError):
        verify_webhook(hook.body.replace(b"red", b"blue"), hook.headers, endpoint.secret)
    (event,) = [e for e in sg.webhooks.events() if e.job_id is not None]
    assert event.job_id == done.id and sg.webhooks.redeliver(event.id).id == event.id
    again = hooks(receiver, "job.completed", 2)[1]
    assert again.headers["webhook-id"] == hook.headers["webhook-id"]
    assert standardwebhooks.Webhook(endpoint.secret).verify(again.body, again.headers)["data"]["answer"] == "red"
    assert [d.status_code for d in sg.jobs.deliveries(done.id)][:1] == [200]


def dataset_upload(sg, tmp_path):
    archive = audit_cli.archive_bytes(pope_folder(tmp_path / "pope"))
    dataset = sg.datasets.upload(("pope.zip", archive), "pope", wait=False)
    assert dataset.status == "validating"
    dataset = sg.datasets.wait(dataset.id, timeout=60, backoff=FAST)
    assert dataset.status == "ready" and dataset.items == 1
    assert sg.datasets.list().items[0].sha256 == dataset.sha256
    with pytest.raises((DatasetInvalid, ApiError)):
        sg.datasets.upload(("bad.zip", b"not an archive"), "pope", timeout=60)  # refused up front or when checked


def gate_on_the_cli(audit, key, tmp_path, capsys, monkeypatch, client):
    """``audit status ID`` (no --wait) prints the progress line and the table; with --fail-on-goal
    and --junit its exit code and XML agree with the audit's verdict."""
    monkeypatch.setattr(audit_cli, "connect", lambda url, key: SmoothGuard(api_key=key, http=client))
    junit = tmp_path / "junit.xml"
    code = main(["audit", "--key", key, "status", str(audit.id), "--fail-on-goal", "--junit", str(junit)])
    out = capsys.readouterr().out
    gate = audit_gate.judge(audit.summary)
    assert code == (0 if gate.passed else 3) and "items 2/2" in out and len(re.findall(r"^σ=0.1\s", out, re.M)) == 1
    assert gate.line() in out
    cases = ET.parse(junit).getroot().findall("testsuite/testcase")
    assert [c.get("name") for c in cases] == ["pgd at σ=0.1"]
    assert (cases[0].find("failure") is None) == gate.passed
