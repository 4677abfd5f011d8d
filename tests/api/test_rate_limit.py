"""Rate limits — per API key, and per client address for requests without a valid key — counted in
the stack's Redis; per-tenant quotas on work in flight. Over either: 429 problem+json with
Retry-After, and nothing stored."""

import io
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from api.main import create_app
from api.rate_limit import parse_limit
from shared.db import session_scope
from shared.models import Audit, AuditItem, Job, Media, RobustModel, Tenant
from shared.quotas import Work, count_in_flight
from tests.audits.test_audits import small_spec
from tests.helpers import auth, post_job
from tests.robust_models.test_robust_models import SMALL as ROBUSTIFY


def client_of(settings, address="testclient", **update):
    """A client of an app with ``update`` applied to the settings, calling from ``address``."""
    return TestClient(create_app(settings.model_copy(update=update)), client=(address, 50000))


def a_new_address():
    return f"client-{uuid.uuid4().hex[:8]}"  # counters live in the session's Redis: one address per test


def count(settings, model):
    with session_scope(settings.database_url) as s:
        return s.scalar(select(func.count()).select_from(model))


def assert_429(r, detail):
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json", r.text
    assert int(r.headers["Retry-After"]) >= 1 and detail in r.json()["detail"], r.json()


def test_limits_parse_and_empty_or_zero_means_none():
    assert parse_limit("600/minute").amount == 600 and parse_limit("5 per second").amount == 5
    assert parse_limit("") is None and parse_limit("0") is None and parse_limit("0 per minute") is None


def test_a_key_past_its_rate_limit_gets_429_and_other_keys_do_not(settings, keys):
    client = client_of(settings, rate_limit="3/minute")
    codes = [client.get("/v1/jobs", headers=auth(keys["alpha"])).status_code for _ in range(3)]
    r = client.get("/v1/jobs", headers=auth(keys["alpha"]))
    assert codes == [200, 200, 200] and int(r.headers.get("Retry-After", 0)) <= 60
    assert_429(r, "rate limit of this API key")
    assert client.get("/v1/jobs", headers=auth(keys["beta"])).status_code == 200
    replica = client_of(settings, rate_limit="3/minute")  # another API process: the count is in Redis
    assert replica.get("/v1/jobs", headers=auth(keys["alpha"])).status_code == 429
    assert client.get("/healthz").status_code == 200 and client.get("/openapi.json").status_code == 200


def test_wrong_keys_from_one_address_get_429_and_valid_keys_there_do_not(settings, keys):
    address = a_new_address()
    guesser = client_of(settings, address, rate_limit_unauthenticated="4/minute")
    codes = [guesser.get("/v1/jobs", headers=auth(f"sg_guess{i}")).status_code for i in range(4)]
    assert codes == [401] * 4
    assert_429(guesser.get("/v1/jobs", headers=auth("sg_guess-again")), "without a valid API key")
    assert_429(guesser.get("/v1/jobs"), "without a valid API key")  # no key at all counts the same
    assert guesser.get("/v1/jobs", headers=auth(keys["alpha"])).status_code == 200
    elsewhere = client_of(settings, a_new_address(), rate_limit_unauthenticated="4/minute")
    assert elsewhere.get("/v1/jobs", headers=auth("sg_guess")).status_code == 401


def test_without_redis_requests_are_served_unlimited(settings, keys):
    client = client_of(settings, rate_limit="1/minute", redis_url="redis://127.0.0.1:1/0")  # nothing listens
    assert [client.get("/v1/jobs", headers=auth(keys["alpha"])).status_code for _ in range(3)] == [200] * 3


def another_png():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_job_quota_is_429_stores_nothing_and_is_per_tenant(settings, keys, store):
    client = client_of(settings, max_jobs_in_flight=1)
    assert post_job(client, keys["alpha"]).status_code == 202
    objects = len(list(store.client.list_objects(store.bucket, recursive=True)))
    r = post_job(client, keys["alpha"], data=another_png())
    assert_429(r, "max_jobs_in_flight = 1")
    assert r.headers["Retry-After"] == "10" and count(settings, Job) == 1 and count(settings, Media) == 1
    assert len(list(store.client.list_objects(store.bucket, recursive=True))) == objects
    assert post_job(client, keys["beta"]).status_code == 202


def test_the_audit_quota_counts_unfinished_audits(settings, keys):
    client = client_of(settings, max_audits_in_flight=1)
    first = client.post("/v1/audits", headers=auth(keys["alpha"]), json=small_spec())
    assert first.status_code == 202, first.text
    assert_429(client.post("/v1/audits", headers=auth(keys["alpha"]), json=small_spec()), "max_audits_in_flight")
    assert count(settings, Audit) == 1
    assert client.post(f"/v1/audits/{first.json()['id']}/cancel", headers=auth(keys["alpha"])).status_code == 202
    assert client.post("/v1/audits", headers=auth(keys["alpha"]), json=small_spec()).status_code == 202


def test_the_robustify_quota_counts_unfinished_runs(settings, keys):
    client = client_of(settings, max_robust_models_in_flight=1)
    assert client.post("/v1/robust-models", headers=auth(keys["alpha"]), json=ROBUSTIFY).status_code == 202
    r = client.post("/v1/robust-models", headers=auth(keys["alpha"]), json=ROBUSTIFY)
    assert_429(r, "max_robust_models_in_flight = 1")
    assert count(settings, RobustModel) == 1


def test_an_audit_submit_waits_while_another_holds_its_tenants_quota_check(settings, keys):
    """The tenant's row is locked while the audit quota is checked, so racing submits queue up
    (here the other submit is a transaction holding that lock)."""
    client = client_of(settings, max_audits_in_flight=1)
    with psycopg.connect(settings.database_url) as con, ThreadPoolExecutor(1) as pool:
        con.execute("select 1 from tenants where name = 'alpha' for no key update")
        pending = pool.submit(client.post, "/v1/audits", headers=auth(keys["alpha"]), json=small_spec())
        time.sleep(0.5)
        assert not pending.done()
        con.rollback()
        assert pending.result(timeout=30).status_code == 202


@pytest.mark.parametrize("work", list(Work))
def test_in_flight_counts_unfinished_work_but_not_an_audits_defense_jobs(database, work):
    with session_scope(database) as s:
        tenant = Tenant(name="t")
        s.add(tenant)
        s.flush()
        media = Media(tenant_id=tenant.id, sha256="0" * 64, content_type="image/png", modality="image", size_bytes=1)
        media.object_key = "k"
        audit = Audit(tenant_id=tenant.id, status="running", model="m", spec={})
        s.add_all([media, audit])
        s.flush()
        item = AuditItem(audit_id=audit.id, index=0, chunk=0, key="k", category="c", kind="open", prompt="p")
        item.media_id = media.id
        s.add(item)
        s.flush()
        job = {"tenant_id": tenant.id, "media_id": media.id, "model": "m", "prompt": "p", "params": {}}
        s.add_all([Job(**job, status="queued", request_hash="a"), Job(**job, status="queued", request_hash="b")])
        s.add(Job(**job, status="queued", request_hash="c", audit_item_id=item.id))  # the audit's: not counted
        s.add(Job(**job, status="succeeded", request_hash="d", finished_at=func.now()))
        model = {"tenant_id": tenant.id, "source_model": "m", "spec": {}}
        s.add_all([RobustModel(**model, status="training"), RobustModel(**model, status="queued")])
        s.flush()
        expected = {Work.JOBS: 2, Work.AUDITS: 1, Work.ROBUST_MODELS: 2}[work]
        assert count_in_flight(s, tenant.id, work, up_to=100) == expected
        assert count_in_flight(s, tenant.id, work, up_to=1) == 1
