"""The client's transport, pure (an ``httpx.MockTransport`` plays the server, a fake clock sleeps):
what is retried and how long it waits, ``Retry-After``, idempotency keys, errors, ``wait()``."""

import ast
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from smoothguard_client import ApiError, Backoff, ConnectionFailed, MissingApiKey, SmoothGuard, WaitTimeout
from smoothguard_client.backoff import retry_after

AUDIT = {
    "id": "00000000-0000-0000-0000-000000000001",
    "status": "running",
    "model": "m",
    "spec": {},
    "progress": {"done": 0, "total": 4},
    "created_at": "2026-12-02T00:00:00Z",
}
CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python" / "smoothguard_client"


def api(handler, **kw):
    """A client on ``handler`` whose pauses are recorded, not slept."""
    slept: list[float] = []
    http = httpx.Client(base_url="http://sg.test", transport=httpx.MockTransport(handler))
    return SmoothGuard(api_key="sg_test", http=http, sleep=slept.append, **kw), slept


def scripted(*answers):
    """Answers in turn: an ``httpx.Response``, or an exception to raise; records the requests."""
    seen: list[httpx.Request] = []

    def handler(request):
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def test_429_and_503_wait_their_retry_after_then_succeed():
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "slow down"}),
        httpx.Response(503, headers={"Retry-After": "3"}, json={"detail": "db down"}),
        httpx.Response(200, json=AUDIT),
    )
    sg, slept = api(handler)
    assert sg.audits.get(AUDIT["id"]).status == "running"
    assert len(seen) == 3 and slept[0] >= 7 and slept[1] >= 3
    assert seen[0].headers["authorization"] == "Bearer sg_test"


def test_backoff_grows_with_jitter_and_retry_after_reads_both_forms():
    b = Backoff(initial=1, factor=2, maximum=8, jitter=0.5)
    pauses = [b.pause(n) for n in range(6)]
    assert all(0.5 * min(8, 2**n) <= p <= min(8, 2**n) for n, p in enumerate(pauses))
    assert 4 <= b.pause(100_000) <= 8  # a days-long wait neither overflows nor stops growing
    assert retry_after(httpx.Response(429, headers={"Retry-After": "12"})) == 12
    now = datetime(2026, 12, 2, tzinfo=UTC)
    dated = httpx.Response(503, headers={"Retry-After": format_datetime(now + timedelta(seconds=30), usegmt=True)})
    assert retry_after(dated, now) == pytest.approx(30)
    assert retry_after(httpx.Response(503)) is None


def test_reads_retry_broken_connections_and_gateways_but_give_up_after_the_retries():
    handler, seen = scripted(
        httpx.ReadError("reset"), httpx.Response(502), httpx.Response(504), httpx.Response(200, json=AUDIT)
    )
    sg, slept = api(handler)
    assert sg.audits.get(AUDIT["id"]).id
    assert len(slept) == 3 and slept[1] > slept[0] * 0.5  # growing (within the jitter)
    handler, seen = scripted(httpx.ConnectError("refused"))
    sg, slept = api(handler, retries=2)
    with pytest.raises(ConnectionFailed, match="ConnectError"):
        sg.audits.get(AUDIT["id"])
    assert len(seen) == 3


def test_a_create_is_retried_with_the_same_idempotency_key_and_a_plain_post_is_not():
    handler, seen = scripted(httpx.ReadError("lost answer"), httpx.Response(202, json=AUDIT))
    sg, _ = api(handler)
    sg.audits.submit({"dataset": {"format": "shapes"}})
    keys = {r.headers["idempotency-key"] for r in seen}
    assert len(seen) == 2 and len(keys) == 1
    handler, seen = scripted(httpx.ReadError("lost answer"), httpx.Response(202, json=AUDIT))
    sg, _ = api(handler)
    with pytest.raises(ConnectionFailed):
        sg.audits.cancel(AUDIT["id"])  # it may have happened: not repeated blindly
    assert len(seen) == 1


def test_errors_carry_the_problem_and_are_not_retried():
    problem = {"title": "Unprocessable", "status": 422, "detail": "bad spec", "errors": [{"loc": ["body"]}]}
    handler, seen = scripted(httpx.Response(422, json=problem, headers={"content-type": "application/problem+json"}))
    sg, _ = api(handler)
    with pytest.raises(ApiError) as err:
        sg.audits.submit({})
    assert err.value.status == 422 and err.value.errors == [{"loc": ["body"]}] and len(seen) == 1
    assert str(err.value) == "POST /v1/audits → 422: bad spec"


@pytest.mark.parametrize("key", [None, "", "  ", "sg_a b", "sg_\x00x"])
def test_no_key_is_a_clear_error_before_any_request(key):
    with pytest.raises(MissingApiKey):
        SmoothGuard("http://sg.test", key)


def test_wait_polls_through_transient_failures_with_no_cap_but_the_timeout():
    running = httpx.Response(200, json=AUDIT, headers={"Retry-After": "5"})
    done = httpx.Response(200, json=AUDIT | {"status": "succeeded"})
    answers = [running] * 40 + [httpx.Response(503), httpx.ConnectError("x")] * 3 + [running] * 20 + [done]
    handler, seen = scripted(*answers)
    sg, slept = api(handler, retries=0)
    updates = []
    assert sg.audits.wait(AUDIT["id"], on_update=updates.append).status == "succeeded"
    assert len(updates) == 61 and len(seen) == len(answers)
    assert min(slept) >= 0.8 and max(slept) <= 15  # ≥ the first pause (jitter 0.2), ≤ the audit's maximum
    assert sum(p >= 5 for p in slept) >= 60  # the running answers' Retry-After is honoured
    assert sum(slept) > 3600 / 10  # 6+ simulated minutes of polling: no cap but the caller's timeout
    handler, _ = scripted(running)
    sg, _ = api(handler)
    with pytest.raises(WaitTimeout) as err:
        sg.audits.wait(AUDIT["id"], timeout=0.0)
    assert err.value.last.status == "running"


def test_the_client_imports_only_httpx_pydantic_standardwebhooks_and_the_standard_library():
    allowed = {"httpx", "pydantic", "standardwebhooks", "smoothguard_client", "__future__"}
    found = set()
    for path in CLIENT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
    assert found - allowed - set(sys.stdlib_module_names) == set()
