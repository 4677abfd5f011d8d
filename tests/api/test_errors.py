"""The one mapping from errors to RFC 9457 problem+json, on a bare app (no stack)."""

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from api import errors
from shared.errors import Conflict, DomainError, InProgress, Invalid, NotFound


def client_raising(exc: Exception) -> TestClient:
    app = FastAPI()
    errors.register(app)

    @app.get("/raise")
    def raise_it() -> None:
        raise exc

    @app.get("/typed")
    def typed(n: int) -> int:
        return n

    return TestClient(app)


@pytest.mark.parametrize(
    ("exc", "status", "title"),
    [
        (Invalid("num_samples is 9; the limit is 8"), 422, "Unprocessable Content"),
        (NotFound("no job 1"), 404, "Not Found"),
        (Conflict("job 1 already finished (succeeded)"), 409, "Conflict"),
        (InProgress("a request with Idempotency-Key 'k' is still in progress"), 409, "Conflict"),
        (DomainError("refused"), 400, "Bad Request"),
    ],
)
def test_each_domain_error_is_one_status_as_problem_json(exc, status, title):
    response = client_raising(exc).get("/raise")
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = {"type": "about:blank", "title": title, "status": status, "detail": str(exc), "instance": "/raise"}
    assert response.json() == body


def test_http_exceptions_keep_their_status_detail_and_headers():
    response = client_raising(HTTPException(401, "missing key", headers={"WWW-Authenticate": "Bearer"})).get("/raise")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "missing key",
        "instance": "/raise",
    }


def test_routing_and_validation_errors_are_problems_too():
    client = client_raising(Invalid("unused"))
    assert client.get("/nowhere").json()["title"] == "Not Found"
    response = client.get("/typed", params={"n": "x"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("query.n: ")
    assert [e["location"] for e in response.json()["errors"]] == ["query.n"]


def test_anything_unforeseen_is_a_500_problem_without_the_traceback():
    app_client = client_raising(RuntimeError("secret path /srv/x"))
    response = TestClient(app_client.app, raise_server_exceptions=False).get("/raise")
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Internal Server Error" and "secret" not in response.text
    assert response.json()["instance"].startswith("urn:uuid:")
