"""Submitting and finding jobs: JSON with a media id, idempotency keys, listing, model and audio
checks. Real PostgreSQL, Redis and S3; no worker needed (jobs stay queued)."""

import io
import json
import re
import threading

import numpy as np
import psycopg
import pytest
import soundfile as sf
from sqlalchemy import func, select

from shared.config import DEMO_IMAGE, DEMO_MODEL
from shared.db import session_scope
from shared.models import Job, Media
from tests.helpers import auth, post_job


def upload(client, key, data=None):
    files = {"file": ("x.png", data if data is not None else DEMO_IMAGE.read_bytes(), "application/octet-stream")}
    return client.post("/v1/media", headers=auth(key), files=files)


def job_count(settings):
    with session_scope(settings.database_url) as s:
        return s.scalar(select(func.count(Job.id)))


def wav(seconds, rate=16000):
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


def test_media_upload_sniffs_type_and_links_a_presigned_copy(client, keys):
    r = upload(client, keys["alpha"])
    assert r.status_code == 201 and r.headers["Location"] == f"/v1/media/{r.json()['id']}"
    body = r.json()
    assert body["content_type"] == "image/png" and body["modality"] == "image"  # not the client's octet-stream
    import httpx

    assert httpx.get(body["url"]).content == DEMO_IMAGE.read_bytes()  # no credentials needed
    assert upload(client, keys["alpha"]).json()["id"] == body["id"]  # same bytes → same media
    assert client.get(f"/v1/media/{body['id']}", headers=auth(keys["beta"])).status_code == 404


def test_json_submit_with_a_media_id(client, keys):
    media_id = upload(client, keys["alpha"]).json()["id"]
    r = client.post(
        "/v1/jobs",
        headers=auth(keys["alpha"]),
        json={"media_id": media_id, "prompt": "Is there a circle?", "answers": "yes-no", "sigma": 0.2},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["media_id"] == media_id and body["params"]["answer_set"] == ["yes", "no"]
    assert body["params"]["sigma"] == 0.2 and body["links"]["media"].startswith("http")
    other = client.post("/v1/jobs", headers=auth(keys["beta"]), json={"media_id": media_id, "prompt": "x"})
    assert other.status_code == 404  # another tenant's media


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"prompt": "x"}, "media_id"),
        ({"media_id": "not-a-uuid", "prompt": "x"}, "media_id"),
        ({"media_id": "00000000-0000-0000-0000-000000000000", "prompt": "x"}, "no media"),
        ({"media_id": "00000000-0000-0000-0000-000000000000", "prompt": "x", "surprise": 1}, "surprise"),
        ({"media_id": "00000000-0000-0000-0000-000000000000", "prompt": "a\u0000b"}, "control characters"),
        ({"media_id": "00000000-0000-0000-0000-000000000000", "prompt": "x", "answers": ["a"] * 10_000}, "answers"),
    ],
)
def test_bad_json_bodies_are_problems(client, keys, settings, body, reason):
    r = client.post("/v1/jobs", headers=auth(keys["alpha"]), json=body)
    assert r.status_code in (404, 422) and reason in r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json" and job_count(settings) == 0


def test_json_nested_too_deep_is_422_not_500(client, keys, settings):
    body = b"[" * 100_000 + b"]" * 100_000
    r = client.post("/v1/jobs", headers=auth(keys["alpha"]) | {"content-type": "application/json"}, content=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert job_count(settings) == 0


def test_neither_multipart_nor_json_is_415(client, keys):
    r = client.post("/v1/jobs", headers=auth(keys["alpha"]) | {"content-type": "text/plain"}, content=b"hi")
    assert r.status_code == 415 and r.headers["content-type"] == "application/problem+json"


def test_unknown_model_is_422_naming_the_known_ones(client, keys, settings):
    r = post_job(client, keys["alpha"], model="llava-hf/llava-1.5-7b-hf")
    assert r.status_code == 422 and str(DEMO_MODEL) in r.json()["detail"] and "unknown model" in r.json()["detail"]
    assert job_count(settings) == 0


def test_known_models_setting_admits_another_model(client, keys, settings):
    client.app.state.settings = settings.model_copy(update={"known_models": "org/other-model"})
    r = post_job(client, keys["alpha"], model="org/other-model")
    assert r.status_code == 202 and r.json()["model"] == "org/other-model"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (wav(2.0), None),
        (wav(61.0), "lasts 61.0 s"),
        (wav(1.0, rate=4000), "sample rate 4000"),
    ],
)
def test_audio_is_decoded_and_bounded(client, keys, settings, data, reason):
    r = client.post("/v1/media", headers=auth(keys["alpha"]), files={"file": ("a.bin", data)})
    if reason is None:
        assert r.status_code == 201 and r.json()["modality"] == "audio"
        bad = client.post(
            "/v1/jobs",
            headers=auth(keys["alpha"]),
            json={"media_id": r.json()["id"], "prompt": "x", "noise_space": "pixel"},
        )
        assert bad.status_code == 422 and "waveform" in bad.json()["detail"]
        wrong = client.post("/v1/jobs", headers=auth(keys["alpha"]), json={"media_id": r.json()["id"], "prompt": "x"})
        assert wrong.status_code == 422 and "takes image input; this file is audio" in wrong.json()["detail"]
        assert job_count(settings) == 0
    else:
        assert r.status_code == 422 and reason in r.json()["detail"]
        with session_scope(settings.database_url) as s:
            assert s.scalar(select(func.count(Media.id))) == 0


def test_options_are_bounded_by_the_settings(client, keys, settings):
    client.app.state.settings = settings.model_copy(update={"max_new_tokens": 64})
    r = post_job(client, keys["alpha"], max_new_tokens="65")
    assert r.status_code == 422 and "max_new_tokens" in r.json()["detail"]


def test_same_idempotency_key_and_body_returns_the_same_job(client, keys, settings):
    h = auth(keys["alpha"]) | {"Idempotency-Key": "order-1"}
    files = {"file": ("x.png", DEMO_IMAGE.read_bytes())}
    first = client.post("/v1/jobs", headers=h, files=files, data={"prompt": "What colour is the circle?"})
    again = client.post("/v1/jobs", headers=h, files=files, data={"prompt": "What colour is the circle?"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers and job_count(settings) == 1
    other_tenant = client.post(
        "/v1/jobs",
        headers=auth(keys["beta"]) | {"Idempotency-Key": "order-1"},
        files=files,
        data={"prompt": "What colour is the circle?"},
    )
    assert other_tenant.json()["id"] != first.json()["id"]  # keys are per tenant


def test_same_idempotency_key_with_another_body_is_422(client, keys, settings):
    h = auth(keys["alpha"]) | {"Idempotency-Key": "order-2"}
    assert post_job(client, keys["alpha"]).status_code == 202  # no key: unrelated
    first = client.post(
        "/v1/jobs",
        headers=h,
        files={"file": ("x.png", DEMO_IMAGE.read_bytes())},
        data={"prompt": "What colour is the circle?"},
    )
    changed = client.post(
        "/v1/jobs",
        headers=h,
        files={"file": ("x.png", DEMO_IMAGE.read_bytes())},
        data={"prompt": "What colour is the circle?", "sigma": "0.2"},
    )
    assert first.status_code == 202 and changed.status_code == 422
    assert "different request body" in changed.json()["detail"] and job_count(settings) == 2


def test_idempotency_key_in_flight_is_409(client, keys, settings):
    """While another request holds the key (here: a transaction holding its lock), a second one is 409."""
    with session_scope(settings.database_url) as s:
        tenant_id = s.scalar(select(Job.tenant_id).limit(1)) or None
    from shared.models import ApiKey
    from shared.tenants import hash_key

    with session_scope(settings.database_url) as s:
        tenant_id = s.scalar(select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(keys["alpha"])))
    held, release = threading.Event(), threading.Event()

    def hold():
        with psycopg.connect(settings.database_url) as con:  # a transaction, as a request's would be
            con.execute("select pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{tenant_id}:order-3",))
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        r = client.post(
            "/v1/jobs",
            headers=auth(keys["alpha"]) | {"Idempotency-Key": "order-3"},
            files={"file": ("x.png", DEMO_IMAGE.read_bytes())},
            data={"prompt": "x"},
        )
    finally:
        release.set()
        t.join()
    assert r.status_code == 409 and "in progress" in r.json()["detail"] and job_count(settings) == 0
    retry = client.post(
        "/v1/jobs",
        headers=auth(keys["alpha"]) | {"Idempotency-Key": "order-3"},
        files={"file": ("x.png", DEMO_IMAGE.read_bytes())},
        data={"prompt": "x"},
    )
    assert retry.status_code == 202


def test_list_pages_with_a_cursor_and_filters_by_status(client, keys):
    ids = [post_job(client, keys["alpha"], seed=str(i)).json()["id"] for i in range(5)]
    post_job(client, keys["beta"])
    client.post(f"/v1/jobs/{ids[1]}/cancel", headers=auth(keys["alpha"]))
    seen, cursor = [], None
    while True:
        page = client.get(
            "/v1/jobs", headers=auth(keys["alpha"]), params={"limit": 2} | ({"cursor": cursor} if cursor else {})
        ).json()
        seen += [j["id"] for j in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ids[::-1]  # newest first, every job once, none of the other tenant's
    cancelled = client.get("/v1/jobs", headers=auth(keys["alpha"]), params={"status": "cancelled"}).json()
    assert [j["id"] for j in cancelled["items"]] == [ids[1]] and cancelled["next_cursor"] is None
    assert client.get("/v1/jobs", headers=auth(keys["alpha"]), params={"status": "done"}).status_code == 422
    assert client.get("/v1/jobs", headers=auth(keys["alpha"]), params={"cursor": "garbage"}).status_code == 422


def test_openapi_documents_both_submit_bodies(client):
    spec = client.get("/openapi.json").json()
    content = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    assert set(content) == {"multipart/form-data", "application/json"}
    assert "JobCreate" in content["application/json"]["schema"]["$ref"]
    responses = spec["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"202", "401", "409", "415", "422"} <= set(responses)
    assert "application/problem+json" in responses["422"]["content"]
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs and refs <= set(spec["components"]["schemas"])  # every reference resolves


def test_errors_outside_routes_are_problems_too(client, keys):
    r = client.post(
        "/v1/webhooks", headers=auth(keys["alpha"]) | {"content-type": "application/json"}, content=b"{nope"
    )
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"
    r = client.put("/v1/webhooks", headers=auth(keys["alpha"]))
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
