"""The FastAPI app: routes, RFC 9457 problem+json errors, health and metrics. Never imports torch."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.routes import audits, jobs, media, ops, webhooks
from api.schemas import JobCreate, JobForm, Problem
from shared.config import Settings, get_settings
from shared.storage import ObjectStore

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    405: "Method Not Allowed",
    404: "Not Found",
    409: "Conflict",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


def problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas only ``openapi_extra`` and ``responses`` refer to."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema(
            [(m, "validation") for m in (JobForm, JobCreate, Problem)], ref_template="#/components/schemas/{model}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="SmoothGuard", version="0.1.0", description="Randomized-smoothing defense for multimodal LLMs")
    app.state.settings = settings or get_settings()
    app.state.store = ObjectStore.from_settings(app.state.settings)
    app.state.metrics, latency = ops.metrics_registry(app.state.settings)
    for router in (jobs.router, media.router, audits.router, audits.datasets, webhooks.router, ops.router):
        app.include_router(router)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]

    @app.middleware("http")
    async def timed(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        latency.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(StarletteHTTPException)  # routing's 404/405 and body-parsing 400s too
    async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(
            exc.status_code,
            TITLES.get(exc.status_code, "Error"),
            str(exc.detail),
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return problem(422, "Unprocessable Content", detail)

    return app
