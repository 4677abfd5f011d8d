"""The one place errors become RFC 9457 problem+json: the domain's (``shared.errors``) by kind
(``shared.errors.OverLimit``, a rate limit or quota used up: 429 with ``Retry-After``), Starlette's
HTTP errors (routing's 404/405, body parsing's 400, the API's own 401/415/422) and request
validation's 422."""

from __future__ import annotations

import logging

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


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def status_of(exc: DomainError) -> int:
    """The status of the nearest mapped kind (``InProgress`` is a ``Conflict``); 400 for the bare base."""
    return next((STATUSES[kind] for kind in type(exc).__mro__ if kind in STATUSES), 400)


async def domain_problem(request: Request, exc: DomainError) -> JSONResponse:
    """A rate limit or quota used up (``OverLimit``) says when to retry (``Retry-After``, seconds)."""
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, OverLimit) else None
    return problem(status_of(exc), str(exc), headers=headers)


async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    return problem(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))


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
    )


async def internal_problem(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: a 500 problem+json (the traceback goes to the log, not the client)."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, "internal error; the request was not completed")


def register(app: FastAPI) -> None:
    app.exception_handler(DomainError)(domain_problem)
    app.exception_handler(StarletteHTTPException)(http_problem)  # routing's 404/405 and body-parsing 400s too
    app.exception_handler(RequestValidationError)(validation_problem)
    for kind in TRANSIENT_ERRORS:
        app.exception_handler(kind)(unavailable_problem)
    app.exception_handler(Exception)(internal_problem)
