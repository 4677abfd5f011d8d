"""Operations endpoints against the real services: readiness names what is down; API processes
share their request metrics. (What /metrics tells and what it hides: tests/observability.)"""

import re

from shared.tools.servers import free_port


def metric(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + want + '}') if want else ''} (\S+)$"
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else None


def test_readyz_checks_database_redis_and_s3(client):
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "s3": "ok"},
    }


def test_readyz_is_503_naming_what_is_down(client, settings):
    from fastapi.testclient import TestClient

    from api.main import create_app

    down = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "s3_bucket": "no-such-bucket"}
    )
    r = TestClient(create_app(down)).get("/readyz")
    body = r.json()
    assert r.status_code == 503 and body["checks"]["database"] == "ok"
    assert "Connection" in body["checks"]["redis"] and "no-such-bucket" in body["checks"]["s3"]


def test_api_processes_share_one_socket_and_their_request_metrics(stack, service_env):
    """``smoothguard api --workers 2``: two processes serve one port, and /metrics (answered by
    either) counts the requests both served."""
    import httpx

    from shared.tools.commands import wait_ready

    port = free_port()
    name = f"api-{port}"
    stack.spawn(name, ["api", "--port", str(port), "--workers", "2"], env=service_env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, stack)
        for _ in range(20):
            assert httpx.get(f"{url}/healthz").status_code == 200  # a new connection each time
        text = httpx.get(f"{url}/metrics").text
        assert (
            metric(text, "smoothguard_http_request_seconds_count", method="GET", route="/healthz", status="200") == 20
        )
    finally:
        stack.stop_children([name])
    log = (stack.root / "logs" / f"{name}.log").read_text()
    assert log.count("Started server process") == 2, log
