"""Webhooks end to end: API → GPU → CPU → a signed POST to a local receiver, retries, 410, redelivery,
secret rotation. Real PostgreSQL, Redis, S3 and a worker process (gpu, cpu and webhooks queues)."""

import pytest

from shared.webhooks.signing import verify
from tests.helpers import auth, post_job, wait_finished


def register(client, key, url):
    r = client.post("/v1/webhooks", headers=auth(key), json={"url": url})
    assert r.status_code == 201, r.text
    return r.json()


def deliveries(client, key, job_id):
    return client.get(f"/v1/jobs/{job_id}/deliveries", headers=auth(key)).json()


def test_private_callback_hosts_are_refused_unless_allowlisted(client, keys, settings):
    client.app.state.settings = settings.model_copy(update={"webhook_allowlist": ""})
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest", "ftp://x/y"):
        r = client.post("/v1/webhooks", headers=auth(keys["alpha"]), json={"url": url})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", url
    client.app.state.settings = settings  # the tests' allowlist names 127.0.0.1
    assert (
        client.post("/v1/webhooks", headers=auth(keys["alpha"]), json={"url": "http://127.0.0.1:9/h"}).status_code
        == 201
    )


def test_callback_url_must_be_a_registered_endpoint(client, keys, settings):
    r = post_job(client, keys["alpha"], callback_url="http://127.0.0.1:9/unregistered")
    assert r.status_code == 422 and "POST /v1/webhooks" in r.json()["detail"]
    endpoint = register(client, keys["beta"], "http://127.0.0.1:9/beta")
    assert post_job(client, keys["alpha"], callback_url=endpoint["url"]).status_code == 422  # beta's, not alpha's


def test_job_result_arrives_by_signed_webhook(client, keys, worker, receiver):
    endpoint = register(client, keys["alpha"], receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    assert client.get("/v1/webhooks", headers=auth(keys["alpha"])).json()[0]["secret"] is None  # shown once
    receiver.secret = endpoint["secret"]
    job_id = post_job(client, keys["alpha"], seed="3", callback_url=receiver.url).json()["id"]
    body = wait_finished(client, keys["alpha"], job_id)
    (hook,) = receiver.wait(1)
    assert hook.verified is True and hook.headers["webhook-id"] == f"msg_{job_id.replace('-', '')}"
    assert hook.json["type"] == "job.completed" and hook.json["data"]["job_id"] == job_id
    assert hook.json["data"]["answer"] == body["answer"] == "red" and hook.json["data"]["url"].endswith(job_id)
    (attempt,) = _wait_deliveries(client, keys["alpha"], job_id, 1)  # recorded as its transaction commits
    assert attempt["status_code"] == 200 and attempt["attempt"] == 1 and attempt["latency_ms"] > 0


@pytest.mark.parametrize("statuses", [[500], [429], [503, 502]])
def test_retried_after_5xx_or_429_every_attempt_recorded(client, keys, worker, receiver, statuses):
    receiver.statuses = list(statuses)
    receiver.secret = register(client, keys["alpha"], receiver.url)["secret"]
    job_id = post_job(client, keys["alpha"], callback_url=receiver.url).json()["id"]
    hooks = receiver.wait(len(statuses) + 1)
    assert [h.answered for h in hooks] == [*statuses, 200] and all(h.verified for h in hooks)
    assert len({h.headers["webhook-id"] for h in hooks}) == 1  # one message, retried
    wait_for = len(statuses) + 1
    got = _wait_deliveries(client, keys["alpha"], job_id, wait_for)
    assert [d["status_code"] for d in got] == [*statuses, 200] and [d["attempt"] for d in got] == list(
        range(1, wait_for + 1)
    )


def test_4xx_is_not_retried_and_410_disables_the_endpoint(client, keys, worker, receiver):
    receiver.statuses = [400, 410]
    endpoint = register(client, keys["alpha"], receiver.url)
    first = post_job(client, keys["alpha"], seed="1", callback_url=receiver.url).json()["id"]
    receiver.wait(1)
    second = post_job(client, keys["alpha"], seed="2", callback_url=receiver.url).json()["id"]
    receiver.wait(2)
    assert [d["status_code"] for d in _wait_deliveries(client, keys["alpha"], first, 1)] == [400]
    assert [d["status_code"] for d in _wait_deliveries(client, keys["alpha"], second, 1)] == [410]
    (listed,) = client.get("/v1/webhooks", headers=auth(keys["alpha"])).json()
    assert listed["enabled"] is False and "410" in listed["disabled_reason"]
    refused = post_job(client, keys["alpha"], callback_url=receiver.url)
    assert refused.status_code == 422 and "disabled" in refused.json()["detail"]
    assert client.post(f"/v1/webhooks/{endpoint['id']}/enable", headers=auth(keys["alpha"])).json()["enabled"]
    assert len(receiver.received) == 2  # nothing retried


def test_redeliver_and_rotation_send_two_signatures(client, keys, worker, receiver):
    endpoint = register(client, keys["alpha"], receiver.url)
    job_id = post_job(client, keys["alpha"], callback_url=receiver.url).json()["id"]
    receiver.wait(1)
    rotated = client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=auth(keys["alpha"])).json()
    assert rotated["secret"] != endpoint["secret"]
    r = client.post(f"/v1/jobs/{job_id}/webhook/redeliver", headers=auth(keys["alpha"]))
    assert r.status_code == 202
    again = receiver.wait(2)[1]
    assert again.headers["webhook-id"] == receiver.received[0].headers["webhook-id"]
    assert len(again.headers["webhook-signature"].split()) == 2  # old and new secret during the grace period
    now = int(again.headers["webhook-timestamp"])
    assert verify(endpoint["secret"], again.headers, again.body, now) and verify(
        rotated["secret"], again.headers, again.body, now
    )
    assert [d["attempt"] for d in _wait_deliveries(client, keys["alpha"], job_id, 2)] == [1, 2]


def test_redeliver_needs_a_finished_job_with_a_callback(client, keys):
    job_id = post_job(client, keys["alpha"]).json()["id"]
    assert client.post(f"/v1/jobs/{job_id}/webhook/redeliver", headers=auth(keys["alpha"])).status_code == 409
    assert client.post(f"/v1/jobs/{job_id}/webhook/redeliver", headers=auth(keys["beta"])).status_code == 404


def _wait_deliveries(client, key, job_id, count, timeout=30):
    import time

    deadline = time.monotonic() + timeout
    while len(got := deliveries(client, key, job_id)) < count:
        assert time.monotonic() < deadline, got
        time.sleep(0.1)
    return got


@pytest.fixture()
def worker(spawn_worker):
    """gpu, cpu and webhooks queues and the beat, which sends the due retries (scaled schedule)."""
    return spawn_worker(("gpu", "cpu", "webhooks", "beat"), **FAST_RETRIES)


FAST_RETRIES = {"SMOOTHGUARD_WEBHOOK_RETRY_SCHEDULE_S": "0.2,0.4,0.8", "SMOOTHGUARD_WEBHOOK_POLL_S": "0.2"}


@pytest.fixture()
def receiver():
    from shared.tools.receiver import Receiver

    with Receiver() as r:
        yield r


def test_endpoints_are_per_tenant(client, keys):
    endpoint = register(client, keys["alpha"], "http://127.0.0.1:9/alpha")
    for path in ("rotate-secret", "enable"):
        assert client.post(f"/v1/webhooks/{endpoint['id']}/{path}", headers=auth(keys["beta"])).status_code == 404
    assert client.delete(f"/v1/webhooks/{endpoint['id']}", headers=auth(keys["beta"])).status_code == 404
    assert client.get("/v1/webhooks", headers=auth(keys["beta"])).json() == []
    again = client.post("/v1/webhooks", headers=auth(keys["alpha"]), json={"url": endpoint["url"]})
    assert again.status_code == 409  # one endpoint per URL and tenant
    assert client.delete(f"/v1/webhooks/{endpoint['id']}", headers=auth(keys["alpha"])).status_code == 204
    assert client.get("/v1/webhooks", headers=auth(keys["alpha"])).json() == []
