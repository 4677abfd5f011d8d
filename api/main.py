"""The FastAPI app: routes, RFC 9457 problem+json errors, health and metrics. Never imports torch."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from api import errors
from api.body_limit import BodyLimit, limit_for
from api.rate_limit import RateLimits
from api.routes import admin, audits, jobs, media, ops, robust_models, webhooks
from api.schemas import JobCreate, JobForm, Problem
from shared.config import Settings, get_settings
from shared.storage import ObjectStore
from workers.celery_app import CelerySender


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
    app.state.queue = CelerySender.from_settings(app.state.settings)
    app.state.rate_limits = RateLimits(app.state.settings)
    app.state.metrics, latency = ops.metrics_registry(app.state.settings)
    routers = (
        jobs.router,
        media.router,
        audits.router,
        audits.datasets,
        robust_models.router,
        webhooks.router,
        ops.router,
        admin.router,
    )
    for router in routers:
        app.include_router(router)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    errors.register(app)
    app.add_middleware(BodyLimit, limit=limit_for(app.state.settings))

    @app.middleware("http")
    async def timed(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")
        latency.labels(request.method, route, str(response.status_code)).observe(time.perf_counter() - start)
        return response

    return app
