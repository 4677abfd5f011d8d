"""The FastAPI app: routes, RFC 9457 problem+json errors, health and metrics, logs in the settings'
format and, when configured, a trace per request (``shared.observability``). Never imports torch."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from prometheus_client import Histogram
from pydantic.json_schema import models_json_schema
from sqlalchemy.orm import sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.body_limit import BodyLimit, limit_for
from api.rate_limit import RateLimits
from api.routes import admin, audits, jobs, media, ops, robust_models, webhooks
from api.schemas import JobCreate, JobForm, Problem
from shared.config import Settings, get_settings
from shared.db import get_engine
from shared.observability import logs, tracing
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


class Timed:
    """Each request's latency by method, route and status, into ``latency`` (a plain ASGI
    middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp, latency: Histogram):
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_status)
        route = getattr(scope.get("route"), "path", "unmatched")
        self.latency.labels(scope["method"], route, str(status)).observe(time.perf_counter() - start)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="SmoothGuard", version="0.1.0", description="Randomized-smoothing defense for multimodal LLMs")
    app.state.settings = settings or get_settings()
    logs.configure(app.state.settings)
    tracing.configure(app.state.settings, "smoothguard-api")
    app.state.sessions = sessionmaker(get_engine(app.state.settings.database_url), expire_on_commit=False)
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
    app.add_middleware(Timed, latency=latency)
    tracing.instrument_app(app)
    return app
