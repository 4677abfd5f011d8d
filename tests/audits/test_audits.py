"""Audits end to end on the real stack: REST → prepare (CPU) → batched attacks (GPU queue) → the
defense jobs through the ordinary queues → judge + report (CPU) → a signed webhook. Resumable
after a worker dies; validated up front; cancellable."""

import csv
import io
import json
import os
import signal
import time
import uuid
from importlib import metadata

import pytest
from sqlalchemy import func, select

from api.schemas import AuditSummary, UniversalStats
from shared.db import session_scope
from shared.models import AuditItem, Job
from shared.tools.receiver import Receiver
from tests.helpers import assert_typed_exactly, auth

QUEUES = ("gpu", "cpu", "audits", "webhooks")


def small_spec(**over):
    spec = {
        "dataset": {"format": "shapes", "seed": 7, "count": 2},  # 2 images, 4 questions
        "attacks": [{"name": "pgd", "steps": 4}, {"name": "eot", "steps": 2, "eot_samples": 2}],
        "defense": {"sigmas": [0.1, 0.2], "num_samples": 3, "max_new_tokens": 4},
        "chunk_size": 2,
        "concurrency": 1,
    }
    return spec | over


def wait_audit(client, key, audit_id, timeout=300, until=lambda a: a["finished_at"] is not None):
    deadline = time.monotonic() + timeout
    while not until(audit := client.get(f"/v1/audits/{audit_id}", headers=auth(key)).json()):
        assert time.monotonic() < deadline, audit
        time.sleep(0.3)
    return audit


def wait_dataset(client, key, dataset_id, timeout=60):
    """An uploaded archive once a worker has checked it (``ready`` or ``invalid``)."""
    deadline = time.monotonic() + timeout
    while (dataset := client.get(f"/v1/datasets/{dataset_id}", headers=auth(key)).json())["status"] == "validating":
        assert time.monotonic() < deadline, dataset
        time.sleep(0.2)
    return dataset


def items(database, audit_id):
    with session_scope(database) as s:
        rows = s.scalars(select(AuditItem).where(AuditItem.audit_id == uuid.UUID(audit_id)).order_by(AuditItem.index))
        return [(i.index, i.attacked_at, json.dumps(i.outputs, sort_keys=True), i.verdicts) for i in rows]


def wait_until_dispatched(database, audit_id, index, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(database) as s:
            query = select(AuditItem.dispatched_at).where(
                AuditItem.audit_id == uuid.UUID(audit_id), AuditItem.index == index
            )
            if s.scalar(query) is not None:
                return
        assert time.monotonic() < deadline, f"item {index} was never dispatched"
        time.sleep(0.1)


def audit_jobs(database, audit_id):
    with session_scope(database) as s:
        query = select(func.count(Job.id)).join(AuditItem, Job.audit_item_id == AuditItem.id)
        return s.scalar(query.where(AuditItem.audit_id == uuid.UUID(audit_id)))


def test_audit_runs_end_to_end_with_report_and_webhook(client, keys, spawn_worker, settings):
    spawn_worker(QUEUES)
    key = keys["alpha"]
    with Receiver() as receiver:
        receiver.secret = client.post("/v1/webhooks", headers=auth(key), json={"url": receiver.url}).json()["secret"]
        r = client.post("/v1/audits", headers=auth(key), json=small_spec(callback_url=receiver.url))
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/v1/audits/{r.json()['id']}"
        audit_id = r.json()["id"]
        seen = []
        audit = wait_audit(client, key, audit_id, until=lambda a: seen.append(a["progress"]) or a["finished_at"])
        (hook,) = receiver.wait(1, timeout=60)
    assert audit["status"] == "succeeded", audit
    p = audit["progress"]
    assert (p["done"], p["total"], p["attacked"], p["jobs_done"], p["jobs_total"]) == (4, 4, 4, 24, 24)
    assert p["fraction"] == 1.0 and any(0 < s["fraction"] < 1 for s in seen)  # progress moved through the middle
    assert audit_jobs(settings.database_url, audit_id) == 4 * 3 * 2  # items × variants × σ, no duplicates
    # the report: every (item, variant, σ-or-undefended) row, judged
    rows = list(
        csv.DictReader(io.StringIO(client.get(f"/v1/audits/{audit_id}/report?format=csv", headers=auth(key)).text))
    )
    assert len(rows) == 4 * 3 * 3
    assert {r["variant"] for r in rows} == {"clean", "pgd", "eot"} and all(r["judge"] == "match" for r in rows)
    report = client.get(f"/v1/audits/{audit_id}/report?format=json", headers=auth(key)).json()
    assert report["summary"] == audit["summary"] and report["summary"]["attacks"] == ["pgd", "eot"]
    html = client.get(f"/v1/audits/{audit_id}/report?format=html", headers=auth(key))
    assert html.headers["content-type"].startswith("text/html") and "<svg" in html.text
    (origin,) = report["audit"]["run"]["generated_on"]  # where every defense job's candidates were generated
    assert (origin["device"], origin["dtype"], origin["revision"], origin["jobs"]) == ("cpu", "float32", None, 24)
    assert origin["torch"] == metadata.version("torch") and origin["transformers"] == metadata.version("transformers")
    assert "<dt>Generated on</dt><dd>cpu · float32 · torch " in html.text and " · 24 jobs</dd>" in html.text
    data = json.loads(html.text.split('id="items-data">')[1].split("</script>")[0])  # the items table's rows
    sigma = data["columns"].index("sigma")
    assert all(len(r[-1][0]) == 4 for r in data["rows"] if r[sigma] is not None)  # candidates: 3 noisy + clean
    images = {r[f] for r in report["items"] for f in ("media_id", "clean_media_id")}
    deltas = {f"{r['clean_media_id']}:{r['media_id']}" for r in report["items"] if r["variant"] != "clean"}
    assert set(data["media"]) == images | deltas  # every image and perturbation embedded: no key needed
    for _, attacked_at, outputs, verdicts in items(settings.database_url, audit_id):
        assert attacked_at is not None and set(json.loads(outputs)) == {"clean", "pgd", "eot"}
        assert set(verdicts) == {f"{v}@{s}" for v in ("clean", "pgd", "eot") for s in ("undefended", "0.1", "0.2")}
    adv = json.loads(items(settings.database_url, audit_id)[0][2])["pgd"]
    assert adv["linf"] <= 16 / 255 + 1e-6 and adv["steps"] == 4
    # a row links the samples that made the defended answer
    defended = next(r for r in rows if r["sigma"] == "0.1")
    job_id = defended["job_id"]
    assert len(client.get(f"/v1/jobs/{job_id}/samples", headers=auth(key)).json()) == 4  # 3 noisy + clean
    assert hook.verified and hook.json["type"] == "audit.completed" and hook.json["data"]["audit_id"] == audit_id
    deliveries = client.get(f"/v1/audits/{audit_id}/deliveries", headers=auth(key)).json()
    assert [d["status_code"] for d in deliveries] == [200]
    assert client.get(f"/v1/audits/{audit_id}", headers=auth(keys["beta"])).status_code == 404


def kill_the_gpu_worker_in_chunk_1(client, key, audit_id, gpu, spawn_worker, database_url) -> dict:
    """Once chunk 0 (items 0 and 1) is attacked and chunk 1 under way (concurrency 1), SIGKILL the GPU
    worker and start another with the sweeper (not the broker's redelivery); the stored items then."""
    wait_audit(client, key, audit_id, until=lambda a: a["progress"]["attacked"] >= 2)
    wait_until_dispatched(database_url, audit_id, index=2)  # concurrency 1: once chunk 0 finished
    time.sleep(1.0)  # chunk 1's attack is under way
    before = {i: (at, out) for i, at, out, _ in items(database_url, audit_id) if at is not None}
    os.kill(gpu.pid, signal.SIGKILL)
    gpu.wait()
    assert sorted(before) == [0, 1], before  # exactly the first chunk was done when the worker died
    spawn_worker(("gpu", "--beat"), SMOOTHGUARD_BROKER_VISIBILITY_TIMEOUT_S="3600")  # not the broker: the sweeper
    return before


def test_audit_resumes_after_the_gpu_worker_is_killed_without_redoing_items(client, keys, spawn_worker, settings):
    """Chunk 0 is attacked and stored; the worker dies in chunk 1; the sweeper sees the dead worker's
    claim and re-sends chunk 1; a new worker finishes the audit and leaves chunk 0's results untouched."""
    key = keys["alpha"]
    spawn_worker(("cpu", "audits"))
    gpu = spawn_worker(("gpu",))
    spec = small_spec(
        dataset={"format": "shapes", "seed": 8, "count": 2},
        chunk_size=2,
        concurrency=1,
        attacks=[{"name": "pgd", "steps": 300}],
    )  # a chunk's attack takes seconds
    audit_id = client.post("/v1/audits", headers=auth(key), json=spec).json()["id"]
    before = kill_the_gpu_worker_in_chunk_1(client, key, audit_id, gpu, spawn_worker, settings.database_url)
    audit = wait_audit(client, key, audit_id, timeout=400)
    assert audit["status"] == "succeeded", audit
    after = {i: (at, out) for i, at, out, _ in items(settings.database_url, audit_id)}
    assert all(after[i] == before[i] for i in before)  # chunk 0 not attacked again, its results unchanged
    assert all(at is not None for at, _ in after.values()) and len(after) == 4
    assert audit_jobs(settings.database_url, audit_id) == 4 * 2 * 2


def test_audit_input_is_checked_before_anything_is_stored(client, keys, settings):
    key = keys["alpha"]

    def post(spec):
        return client.post("/v1/audits", headers=auth(key), json=spec)

    assert post(small_spec(model="no/such-model")).status_code == 422
    assert post(small_spec(attacks=[{"name": "pgd"}, {"name": "pgd"}])).status_code == 422
    assert post(small_spec(attacks=[{"name": "fgsm"}])).status_code == 422
    assert post(small_spec(judge="gpt-judge")).status_code == 422  # checked now, not after the GPU work
    assert post(small_spec(defense={"sigmas": [-0.1]})).status_code == 422
    r = post(small_spec(dataset={"format": "shapes", "count": 5000}))
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    r = post(small_spec(dataset={"format": "pope"}))
    assert r.status_code == 422 and "archive" in r.json()["detail"]
    r = post(small_spec(dataset={"format": "pope", "archive": "0" * 64}))
    assert r.status_code == 422 and "POST /v1/datasets" in r.json()["detail"]
    r = post(small_spec(callback_url="http://127.0.0.1:9/hook"))
    assert r.status_code == 422 and "registered" in r.json()["detail"]
    assert client.get("/v1/audits", headers=auth(key)).json()["items"] == []  # nothing stored


def test_cancel_stops_an_audit_and_its_jobs(client, keys, spawn_worker, settings):
    key = keys["alpha"]
    spawn_worker(("cpu", "audits"))  # no GPU worker: the audit waits on its first chunk
    audit_id = client.post("/v1/audits", headers=auth(key), json=small_spec()).json()["id"]
    wait_audit(client, key, audit_id, until=lambda a: a["status"] == "running")
    assert client.get(f"/v1/audits/{audit_id}/report", headers=auth(key)).status_code == 409
    r = client.post(f"/v1/audits/{audit_id}/cancel", headers=auth(key))
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert client.post(f"/v1/audits/{audit_id}/cancel", headers=auth(key)).status_code == 409


@pytest.fixture()
def pope_archive(tmp_path):
    """A two-question POPE set in the public layout, zipped."""
    import zipfile

    from shared.benchmarks.shapes import generate_set, render

    scenes = generate_set(11, 2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        lines = []
        for n, (scene, _) in enumerate(scenes):
            img = io.BytesIO()
            render(scene).save(img, format="PNG")
            zf.writestr(f"pope/images/img{n}.png", img.getvalue())
            shape = scene.shapes[0].shape
            lines.append(
                json.dumps(
                    {
                        "question_id": n,
                        "image": f"img{n}.png",
                        "label": "yes",
                        "text": f"Is there a {shape} in the image?",
                    }
                )
            )
        zf.writestr("pope/coco_pope_random.json", "\n".join(lines) + "\n")
    return buf.getvalue()


def test_an_uploaded_pope_archive_is_audited(client, keys, spawn_worker, pope_archive):
    key = keys["alpha"]
    bad = client.post(
        "/v1/datasets", headers=auth(key), files={"file": ("x.zip", b"not a zip")}, data={"format": "pope"}
    )
    assert bad.status_code == 422
    r = client.post(
        "/v1/datasets", headers=auth(key), files={"file": ("pope.zip", pope_archive)}, data={"format": "pope"}
    )
    assert r.status_code == 202 and r.json()["status"] == "validating", r.text
    spawn_worker(QUEUES)
    dataset = wait_dataset(client, key, r.json()["id"])
    assert dataset["status"] == "ready" and dataset["items"] == 2, dataset
    spec = {
        "dataset": {"format": "pope", "archive": dataset["sha256"]},
        "attacks": [{"name": "universal", "steps": 3, "universal_prompts": 2}],
        "defense": {"sigmas": [0.1], "num_samples": 2, "max_new_tokens": 4},
    }
    audit_id = client.post("/v1/audits", headers=auth(key), json=spec).json()["id"]
    audit = wait_audit(client, key, audit_id)
    assert audit["status"] == "succeeded", audit
    assert audit["universal"]["prompts"] == 2 and audit["universal"]["linf"] <= 16 / 255 + 1e-6
    assert_typed_exactly(UniversalStats, audit["universal"])
    assert audit["summary"]["pope"] and audit["summary"]["cost"]  # every table the model types, filled
    assert_typed_exactly(AuditSummary, audit["summary"])
    report = client.get(f"/v1/audits/{audit_id}/report?format=json", headers=auth(key)).json()
    assert {r["category"] for r in report["items"]} == {"random"} and len(report["items"]) == 2 * 2 * 2
    assert all(r["correct"] is not None for r in report["items"])  # yes/no answers judged against the labels
    universal = {r["image_url"] for r in report["items"] if r["variant"] == "universal"}
    assert len(universal) == 1  # ONE adversarial image, reused for every prompt


def test_a_failing_audit_step_ends_the_audit_failed_with_the_reason(client, keys, spawn_worker):
    key = keys["alpha"]
    spawn_worker(("cpu", "audits"), SMOOTHGUARD_MAX_IMAGE_PIXELS="100")  # the set's 64×64 images are over it
    audit_id = client.post("/v1/audits", headers=auth(key), json=small_spec()).json()["id"]
    audit = wait_audit(client, key, audit_id, timeout=120)
    assert audit["status"] == "failed" and "4096 pixels; the limit is 100" in audit["error"], audit
    assert audit["progress"]["total"] == 0  # nothing half-made: the prepare step rolled back
