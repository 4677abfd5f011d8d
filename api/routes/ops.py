"""Operations: liveness, readiness (database, broker, object store) and Prometheus metrics — the
public ``/metrics`` (request latency, queue depths: no database query, nothing about tenants'
work) and the operator's ``/v1/admin/metrics`` (work in flight service-wide, admin token)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import redis
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import bindparam, text

from api.deps import SettingsDep, StoreDep
from api.routes.admin import require_admin
from api.schemas import problems
from shared.config import Settings
from shared.db import get_engine
from shared.pipeline import QueueName

router = APIRouter(tags=["operations"], responses=problems(_422="an unknown query parameter"))


def check(name: str, probe: Callable[[], object]) -> tuple[str, str]:
    try:
        probe()
        return name, "ok"
    except Exception as exc:  # readiness reports every failure as text, never raises
        return name, f"{type(exc).__name__}: {exc}"[:300]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is down (names it)"}})
def readyz(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    """200 when PostgreSQL, Redis and the S3 bucket answer; 503 naming the ones that don't."""

    def database() -> None:
        with get_engine(settings.database_url).connect() as con:
            con.execute(text("select 1"))

    def broker() -> None:
        redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2).ping()

    def bucket() -> None:
        if not store.client.bucket_exists(store.bucket):
            raise LookupError(f"bucket {store.bucket} does not exist")

    checks = dict([check("database", database), check("redis", broker), check("s3", bucket)])
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


class QueueDepths(Collector):
    """Messages waiting per queue, read at scrape time: one LLEN per queue in one round trip to the
    broker (the lists are the queues; what KEDA scales on)."""

    def __init__(self, settings: Settings):
        self.client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("smoothguard_queue_depth", "Messages waiting per queue", labels=["queue"])
        with self.client.pipeline(transaction=False) as pipe:
            for queue in QueueName:
                pipe.llen(queue.value)
            for queue, length in zip(QueueName, pipe.execute(), strict=True):
                depth.add_metric([queue.value], length)
        yield depth


class WorkInFlight(Collector):
    """Unfinished jobs and audits by status, service-wide — for the operator only (``/v1/admin/metrics``).
    Counted over the status index among the unfinished statuses alone: a scrape's cost follows the
    work in flight (bounded by the tenants' quotas), never the tables' history. Finished work is
    the workers' counters (``smoothguard_job_seconds_count{status}``, ``smoothguard_rounds_total``)."""

    def __init__(self, settings: Settings):
        self.database_url = settings.database_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for table, name, statuses in IN_FLIGHT:
            family = GaugeMetricFamily(
                f"smoothguard_{name}_in_flight", f"Unfinished {name} by status", labels=["status"]
            )
            counts = dict.fromkeys(statuses, 0)
            with get_engine(self.database_url).connect() as con:
                query = text(f"select status, count(*) from {table} where status in :statuses group by status")
                counts |= dict(
                    con.execute(query.bindparams(bindparam("statuses", expanding=True)), {"statuses": statuses}).all()
                )
            for status, count in counts.items():
                family.add_metric([status], count)
            yield family


IN_FLIGHT = (  # table, metric name, its unfinished statuses
    ("jobs", "jobs", ["queued", "running"]),
    ("audits", "audits", ["queued", "running", "reporting"]),
)


def metrics_registry(settings: Settings) -> tuple[CollectorRegistry, Histogram]:
    """What ``/metrics`` answers — this API's request latency and the queue depths, nothing about
    tenants' work and no database query — and the request latency histogram. Under several API
    processes (``smoothguard api --workers``, which sets prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``)
    each writes its histogram to that folder and the answer sums them all."""
    registry = CollectorRegistry()
    registry.register(QueueDepths(settings))
    shared_folder = "PROMETHEUS_MULTIPROC_DIR" in os.environ
    if shared_folder:
        MultiProcessCollector(registry)
    latency = Histogram(
        "smoothguard_http_request_seconds",
        "API request latency",
        ["method", "route", "status"],
        registry=None if shared_folder else registry,
    )
    return registry, latency


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    """Prometheus text format: request latency and queue depths (unauthenticated; cheap)."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/admin/metrics",
    response_class=Response,
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}}
    | problems(_401="missing or invalid admin token", _404="no admin token is configured"),
)
def work_metrics(settings: SettingsDep) -> Response:
    """Prometheus text format, with the admin token: unfinished jobs and audits by status,
    service-wide (the same from every API replica: scrape one)."""
    registry = CollectorRegistry()
    registry.register(WorkInFlight(settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
