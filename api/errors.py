"""The one place errors become RFC 9457 problem+json: the domain's (``shared.errors``) by kind
(``shared.errors.OverLimit``, a rate limit or quota used up: 429 with ``Retry-After``), Starlette's
HTTP errors (routing's 404/405, body parsing's 400, the API's own 401/415/422), request
validation's 422 (each problem in ``errors[]``) and anything unforeseen (500, its ``instance`` the
id the traceback is logged under). Every problem's ``instance`` names the occurrence: the request's
path, or ``urn:uuid:…`` for a 500."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import Conflict, DomainError, Invalid, NotFound, OverLimit
from shared.faults import TRANSIENT_ERRORS, is_transient

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    404: "Not Found",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
STATUSES: dict[type[DomainError], int] = {Invalid: 422, NotFound: 404, Conflict: 409, OverLimit: 429}


def problem(
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_of(exc: DomainError) -> int:
    """The status of the nearest mapped kind (``InProgress`` is a ``Conflict``); 400 for the bare base."""
    return next((STATUSES[kind] for kind in type(exc).__mro__ if kind in STATUSES), 400)


async def domain_problem(request: Request, exc: DomainError) -> JSONResponse:
    """A rate limit or quota used up (``OverLimit``) says when to retry (``Retry-After``, seconds)."""
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, OverLimit) else None
    return problem(status_of(exc), str(exc), headers=headers, instance=request.url.path)


async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = exc.headers
    if exc.status_code == 405:
        headers = (headers or {}) | {"Allow": ", ".join(allowed_methods(request))}
    return problem(exc.status_code, str(exc.detail), headers=headers, instance=request.url.path)


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document gives the request's path (Starlette's 405 names only the
    first route that matched it); a literal path (``/v1/webhooks/events``) shadows a template
    (``/v1/webhooks/{endpoint_id}``)."""
    paths = request.app.openapi()["paths"]
    matched = [p for p in paths if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(p)), request.url.path)]
    literal = [p for p in matched if "{" not in p]
    return sorted({m.upper() for p in (literal or matched) for m in paths[p]})


def validation_errors(exc: RequestValidationError) -> list[dict[str, str]]:
    """One entry per problem: where (``query.limit``, ``body.spec.sigmas.0``) and what."""
    return [{"location": ".".join(map(str, e["loc"])), "detail": e["msg"]} for e in exc.errors()]


async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_errors(exc)
    detail = "; ".join(f"{e['location']}: {e['detail']}" for e in errors)
    return problem(422, detail, instance=request.url.path, errors=errors)


async def unavailable_problem(request: Request, exc: Exception) -> JSONResponse:
    """The database, the queue or the object store is down or failing: 503 with ``Retry-After`` (a
    request with an ``Idempotency-Key`` may be retried as is); anything else is a 500."""
    if not is_transient(exc):
        return await internal_problem(request, exc)
    log.warning("dependency unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem(
        503,
        "a backing service (database, queue or object store) is unavailable; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
        instance=request.url.path,
    )


async def internal_problem(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: a 500 problem+json whose ``instance`` is the id its traceback is logged
    under (the traceback goes to the log, not the client)."""
    instance = f"urn:uuid:{uuid.uuid4()}"
    log.error("unhandled error %s on %s %s", instance, request.method, request.url.path, exc_info=exc)
    return problem(500, "internal error; the request was not completed", instance=instance)


def register(app: FastAPI) -> None:
    app.exception_handler(DomainError)(domain_problem)
    app.exception_handler(StarletteHTTPException)(http_problem)  # routing's 404/405 and body-parsing 400s too
    app.exception_handler(RequestValidationError)(validation_problem)
    for kind in TRANSIENT_ERRORS:
        app.exception_handler(kind)(unavailable_problem)
    app.exception_handler(Exception)(internal_problem)
