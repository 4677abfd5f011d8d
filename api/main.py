"""The FastAPI app: routes, RFC 9457 problem+json errors, health and metrics, logs in the settings'
format and, when configured, a trace per request (``shared.observability``). Never imports torch.

The OpenAPI document is the contract clients are generated from: each operation's id is its
route function's name (snake_case, unique), Bearer auth is a security scheme, and its ``webhooks``
section describes what we POST to ``callback_url``s."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from prometheus_client import Histogram
from pydantic.json_schema import models_json_schema
from sqlalchemy.orm import sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.body_limit import BodyLimit, limit_for
from api.deps import known_query
from api.rate_limit import RateLimits
from api.routes import admin, audits, jobs, media, ops, robust_models, webhooks
from api.schemas import AuditCompleted, JobCompleted, JobCreate, JobForm, Problem
from shared.config import Settings, get_settings
from shared.db import get_engine
from shared.observability import logs, tracing
from shared.storage import ObjectStore
from workers.celery_app import CelerySender


def form_fields(form: dict[str, Any]) -> dict[str, Any]:
    """A multipart form's fields as sent: a form cannot say ``null`` (leave the field out instead)."""
    fields = {}
    for name, field in form["properties"].items():
        kinds = [k for k in field.get("anyOf", []) if k.get("type") != "null"]
        plain = {k: v for k, v in field.items() if k != "anyOf" and not (k == "default" and v is None)}
        fields[name] = plain | kinds[0] if len(kinds) == 1 else field
    return fields


def openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas only ``openapi_extra`` and ``responses`` refer to, the
    job form's fields as a form sends them, and the webhooks without FastAPI's stock 422."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            webhooks=app.webhooks.routes,
        )
        _, defs = models_json_schema(
            [(m, "validation") for m in (JobForm, JobCreate, Problem)], ref_template="#/components/schemas/{model}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        schema["components"]["schemas"]["JobForm"]["properties"] = form_fields(defs["$defs"]["JobForm"])
        for hook in schema.get("webhooks", {}).values():  # FastAPI's stock 422: receivers don't validate for us
            hook["post"]["responses"].pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):  # only that 422 named them
            schema["components"]["schemas"].pop(name, None)
        check_operation_ids(schema)
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


def operation_id(route: APIRoute) -> str:
    """``submit_job``, ``read_audit``: the route function's name (``check_operation_ids`` keeps them unique)."""
    return route.name


def check_operation_ids(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for item in schema["paths"].values() for op in item.values()]
    if twice := sorted({i for i in ids if ids.count(i) > 1}):
        raise RuntimeError(f"two routes share an operationId: {', '.join(twice)}")


RECEIVER_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "received (any 2xx); otherwise it is retried on the schedule"},
    410: {"description": "Gone: the endpoint is disabled (re-enable with POST /v1/webhooks/{id}/enable)"},
}


def document_webhooks(app: FastAPI) -> None:
    """The payloads we POST to a job's or audit's ``callback_url`` (``shared.webhooks.delivery``)."""

    @app.webhooks.post("job.completed", operation_id="job_completed", responses=RECEIVER_ANSWERS)
    def job_completed(body: JobCompleted) -> None:
        """A job ended (succeeded, abstained, failed or cancelled). Answer 2xx; 410 disables the endpoint."""

    @app.webhooks.post("audit.completed", operation_id="audit_completed", responses=RECEIVER_ANSWERS)
    def audit_completed(body: AuditCompleted) -> None:
        """An audit ended (succeeded with its report, failed or cancelled). Answer 2xx; 410 disables the endpoint."""


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="SmoothGuard",
        version="0.1.0",
        description="Randomized-smoothing defense for multimodal LLMs",
        generate_unique_id_function=operation_id,
        dependencies=[Depends(known_query)],
    )
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
    document_webhooks(app)
    app.openapi = lambda: openapi(app)  # type: ignore[method-assign]
    errors.register(app)
    app.add_middleware(BodyLimit, limit=limit_for(app.state.settings))
    app.add_middleware(Timed, latency=latency)
    tracing.instrument_app(app)
    return app
