"""Operations: liveness, readiness (database, broker, object store) and Prometheus metrics."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import text

from api.deps import SettingsDep, StoreDep
from shared.config import Settings
from shared.db import get_engine
from shared.pipeline import QueueName

router = APIRouter(tags=["operations"])

STAGES = {  # stage name → (start column, end column)
    "queued": ("created_at", "started_at"),
    "generation": ("started_at", "generated_at"),
    "aggregation": ("generated_at", "aggregated_at"),
    "total": ("created_at", "finished_at"),
}


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


class ServiceCollector(Collector):
    """Read at scrape time from the shared state (every worker writes there): jobs and audits by status,
    queue depths, stage latencies of finished jobs, samples generated."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | SummaryMetricFamily]:
        jobs = GaugeMetricFamily("smoothguard_jobs", "Jobs by status", labels=["status"])
        audits = GaugeMetricFamily("smoothguard_audits", "Audits by status", labels=["status"])
        samples = CounterMetricFamily("smoothguard_samples_generated", "Candidates generated (sample rows)")
        stages = SummaryMetricFamily("smoothguard_stage_seconds", "Time spent per stage by jobs", labels=["stage"])
        with get_engine(self.settings.database_url).connect() as con:
            for status, count in con.execute(text("select status, count(*) from jobs group by status")):
                jobs.add_metric([status], count)
            for status, count in con.execute(text("select status, count(*) from audits group by status")):
                audits.add_metric([status], count)
            samples.add_metric([], con.execute(text("select count(*) from samples")).scalar_one())
            for stage, (start, end) in STAGES.items():
                count, total = con.execute(
                    text(
                        f"select count(*), coalesce(sum(extract(epoch from {end} - {start})), 0) from jobs "
                        f"where {start} is not null and {end} is not null"
                    )
                ).one()
                stages.add_metric([stage], count_value=count, sum_value=float(total))
        depth = GaugeMetricFamily("smoothguard_queue_depth", "Messages waiting per queue", labels=["queue"])
        client = redis.Redis.from_url(self.settings.redis_url, socket_timeout=2)
        for queue in QueueName:
            depth.add_metric([queue.value], client.llen(queue.value))
        yield from (jobs, audits, samples, stages, depth)


def metrics_registry(settings: Settings) -> tuple[CollectorRegistry, Histogram]:
    """What ``/metrics`` answers, and the request latency histogram. Under several API processes
    (``smoothguard api --workers``, which sets prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``) each
    writes its histogram to that folder and the answer sums them all."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(settings))
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


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
