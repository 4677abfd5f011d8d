"""Robustify as a GPU job over REST, on the real stack: submit → a GPU worker distils the served
demo model's vision side under pixel noise → the checkpoint's files in S3, the training record
(σ schedule, steps, validation accuracy under noise) in Postgres; progress while it trains;
cancel; a killed worker's run restarts and finishes; bad requests are refused with nothing stored."""

import hashlib
import json
import signal
import time
import uuid

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import func, select

from api.schemas import TrainingRecord
from shared.backends.registry import load_generator
from shared.config import DEMO_IMAGE, DEMO_MODEL
from shared.db import session_scope
from shared.media.decode import load_image
from shared.models import RobustModel
from shared.smoothing.types import CandidateSpec
from tests.helpers import assert_typed_exactly, auth

SMALL = {
    "dataset": {"format": "shapes", "seed": 3, "count": 8},
    "steps": 3,
    "minutes": 5,
    "batch": 4,
    "validation_items": 4,
    "validation_sigmas": [0.25],
}


def wait_robust(client, key, model_id, until, timeout=180):
    deadline = time.monotonic() + timeout
    while not until(body := client.get(f"/v1/robust-models/{model_id}", headers=auth(key)).json()):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    return body


def finished(body):
    return body["finished_at"] is not None


def submit(client, key, **over):
    r = client.post("/v1/robust-models", headers=auth(key), json=SMALL | over)
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/v1/robust-models/{r.json()['id']}"
    return r.json()


def rows(database):
    with session_scope(database) as s:
        return s.scalar(select(func.count()).select_from(RobustModel))


def test_robustify_over_rest_trains_uploads_and_records(client, keys, worker, settings, tmp_path):
    key = keys["alpha"]
    created = submit(client, key)
    assert created["status"] == "queued" and created["source_model"] == str(DEMO_MODEL)
    body = wait_robust(client, key, created["id"], finished)
    assert body["status"] == "succeeded", body
    assert body["progress"]["steps"] == 3 and body["progress"]["fraction"] == 1.0 and body["attempt"] == 1
    record = body["record"]
    assert record["steps"] == 3 and record["stopped_by"] == "steps" and record["noise_space"] == "pixel"
    assert record["sigma"]["sigma_max"] == 0.55 and record["batch"] == 4 and record["seed"] == 0
    assert set(record["validation"][-1]) == {"step", "val_accuracy_sigma_0", "val_accuracy_sigma_0.25"}
    assert set(record["source_validation"]) == {"val_accuracy_sigma_0", "val_accuracy_sigma_0.25"}
    assert_typed_exactly(TrainingRecord, record)
    files = {f["name"]: f for f in body["files"]}
    assert {"model.safetensors", "config.json", "training_info.json", "tokenizer_config.json"} <= set(files)

    # every file downloads, byte for byte what the record says
    for f in files.values():
        r = client.get(f["link"], headers=auth(key))
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == f["sha256"]
        assert len(r.content) == f["bytes"]
        (tmp_path / f["name"]).write_bytes(r.content)
    weights = load_file(tmp_path / "model.safetensors")
    source = load_file(DEMO_MODEL / "model.safetensors")
    trained = [k for k in source if "vision_tower" in k or "multi_modal_projector" in k]
    frozen = [k for k in source if k not in trained]
    assert trained and frozen
    assert all(torch.equal(weights[k], source[k]) for k in frozen)  # the language model is bit-identical
    assert any(not torch.equal(weights[k], source[k]) for k in trained)  # the image path was trained
    info = json.loads((tmp_path / "training_info.json").read_text())
    assert info["source"] == str(DEMO_MODEL) and info["spec"]["steps"] == 3 and info["record"]["steps"] == 3
    # the files are a checkpoint the service's backend loads and answers with
    gen = load_generator(str(tmp_path), settings=settings)
    clean = CandidateSpec(index=0, round=0, seed=None, sigma=0.0, noise_space="pixel", is_clean=True)
    out = gen.generate(load_image(DEMO_IMAGE.read_bytes()), "What colour is the circle?", [clean], max_new_tokens=4)
    assert len(out) == 1 and out[0].text.strip()

    # tenants see only their own
    other = keys["beta"]
    assert client.get(f"/v1/robust-models/{created['id']}", headers=auth(other)).status_code == 404
    assert client.get(files["config.json"]["link"], headers=auth(other)).status_code == 404
    assert client.get("/v1/robust-models", headers=auth(other)).json()["items"] == []
    assert [m["id"] for m in client.get("/v1/robust-models", headers=auth(key)).json()["items"]] == [created["id"]]
    missing = client.get(f"/v1/robust-models/{created['id']}/files/nope.bin", headers=auth(key))
    assert missing.status_code == 404 and "model.safetensors" in missing.json()["detail"]


def test_cancel_stops_training_and_stores_nothing(client, keys, worker, settings, store):
    key = keys["alpha"]
    long_run = submit(client, key, steps=None, minutes=5, validation_items=0)
    wait_robust(client, key, long_run["id"], lambda b: b["progress"]["steps"] > 0)  # training, with progress
    assert client.get(f"/v1/robust-models/{long_run['id']}", headers=auth(key)).headers["Retry-After"] == "10"
    r = client.post(f"/v1/robust-models/{long_run['id']}/cancel", headers=auth(key))
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert client.post(f"/v1/robust-models/{long_run['id']}/cancel", headers=auth(key)).status_code == 409
    # the one GPU worker is free again: the next run trains and finishes long before the 5 minutes
    started = time.monotonic()
    nxt = wait_robust(client, key, submit(client, key, steps=1, validation_items=0)["id"], finished, timeout=120)
    assert nxt["status"] == "succeeded" and time.monotonic() - started < 120
    done = client.get(f"/v1/robust-models/{long_run['id']}", headers=auth(key))
    body = done.json()
    assert body["status"] == "cancelled" and body["files"] == [] and body["record"] is None
    assert "Retry-After" not in done.headers  # finished: nothing to poll for
    prefix = f"robust-models/{settings_tenant(settings, long_run['id'])}/{long_run['id']}/"
    assert list(store.client.list_objects(settings.s3_bucket, prefix=prefix, recursive=True)) == []
    no_file = client.get(f"/v1/robust-models/{long_run['id']}/files/config.json", headers=auth(key))
    assert no_file.status_code == 409


def settings_tenant(settings, model_id):
    with session_scope(settings.database_url) as s:
        return s.get(RobustModel, uuid.UUID(model_id)).tenant_id


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"model": "no/such-model"}, "unknown model"),
        ({"minutes": 10_000}, "the limit is 45"),
        ({"dataset": {"format": "pope", "archive": "0" * 64}}, "no pope archive"),
        ({"batch": 0}, "batch"),
        ({"noise_space": "waveform"}, "noise_space"),
        ({"dataset": {"format": "mm-safetybench", "archive": "0" * 64}}, "validation_items"),
        ({"validation_sigmas": [-1]}, "validation_sigmas"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_requests_are_refused_with_nothing_stored(client, keys, settings, over, message):
    r = client.post("/v1/robust-models", headers=auth(keys["alpha"]), json=SMALL | over)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert message in r.text
    assert rows(settings.database_url) == 0


@pytest.fixture()
def audio_known(service_env, qwen_audio_path, llava_next_path):
    return service_env | {"SMOOTHGUARD_KNOWN_MODELS": f"{qwen_audio_path},{llava_next_path}"}


def test_an_audio_model_is_refused_at_submit(audio_known, qwen_audio_path, keys, monkeypatch):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from shared.config import get_settings

    for k, v in audio_known.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    client = TestClient(create_app(get_settings()))
    r = client.post("/v1/robust-models", headers=auth(keys["alpha"]), json=SMALL | {"model": qwen_audio_path})
    assert r.status_code == 422 and "takes audio input" in r.text, r.text
    get_settings.cache_clear()


@pytest.mark.chaos
def test_a_worker_killed_mid_training_the_run_restarts_and_finishes(client, keys, spawn_worker, settings):
    key = keys["alpha"]
    first = spawn_worker(("gpu",))
    run = submit(client, key, steps=150, batch=4, validation_items=0)  # ≥ several seconds: killed mid-training
    wait_robust(client, key, run["id"], lambda b: b["progress"]["steps"] > 0)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    spawn_worker(("cpu", "--beat"))  # the sweeper sees the dead worker's claim and re-sends the run
    spawn_worker(("gpu",), SMOOTHGUARD_BROKER_VISIBILITY_TIMEOUT_S="3600")  # not the broker's redelivery
    body = wait_robust(client, key, run["id"], finished, timeout=300)
    assert body["status"] == "succeeded" and body["attempt"] == 2, body
    assert body["record"]["steps"] == 150 and body["progress"]["steps"] == 150
