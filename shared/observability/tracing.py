"""OpenTelemetry traces: the API request, every task (the context travels in the Celery message
headers, see ``workers/celery_app.py``) and each webhook attempt, one trace per job. Exported over
OTLP/HTTP when ``otlp_endpoint`` is set, appended as JSON lines to ``trace_file`` when that is;
with neither, nothing is set up: the SDK is not even imported and every span is OpenTelemetry's
no-op.

A job whose first round waits for a free slot of its tenant is sent later by the dispatcher: its
trace starts at that ``cpu.dispatch`` task, not at the submit (every task span carries ``job_id``
and ``tenant_id``, which find both). So does a webhook retry, sent by the beat's ``deliver_due``."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from shared.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExportResult

tracer = trace.get_tracer("smoothguard")
NOT_TRACED = "healthz,readyz,metrics"  # the probes' and the scrape's requests make no traces
_setup = {"enabled": False, "done": False}
_lock = threading.Lock()


def configure(settings: Settings, service: str) -> bool:
    """This process's tracer provider, named ``service``, exporting where the settings say (the
    first call in a process decides); whether spans are recorded."""
    with _lock:
        if not _setup["done"]:
            _setup["done"] = True
            _setup["enabled"] = bool(settings.otlp_endpoint or settings.trace_file)
            if _setup["enabled"]:
                trace.set_tracer_provider(provider(settings, service))
    return _setup["enabled"]


def enabled() -> bool:
    return _setup["enabled"]


def provider(settings: Settings, service: str) -> trace.TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    traces = TracerProvider(resource=Resource.create({"service.name": service}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/")
        endpoint = endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"
        traces.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if settings.trace_file:
        traces.add_span_processor(SimpleSpanProcessor(file_exporter(settings.trace_file)))
    return traces


def file_exporter(path: str) -> Any:
    """Spans as JSON lines appended to ``path`` — one write per batch on an O_APPEND file, so the
    API and the workers can share one file."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class FileSpanExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans).encode()
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, lines)
            finally:
                os.close(fd)
            return SpanExportResult.SUCCESS

    return FileSpanExporter()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "kind": span.kind.name,
        "service": span.resource.attributes.get("service.name"),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
    }


def instrument_app(app: FastAPI) -> None:
    """A server span per request (the probes and ``/metrics`` aside), when tracing is on."""
    if enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls=NOT_TRACED, exclude_spans=["receive", "send"])


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A child span of the current one (a no-op one when tracing is off)."""
    with tracer.start_as_current_span(name, attributes=recordable(attributes)) as current:
        yield current


def annotate(**attributes: Any) -> None:
    """Attributes of the current span (ids of what it is about)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(recordable(attributes))


def recordable(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        f"smoothguard.{k}": v if isinstance(v, bool | int | float) else str(v)
        for k, v in attributes.items()
        if v is not None
    }


def inject(carrier: dict[str, Any]) -> None:
    """The current trace context into a message's headers (nothing when tracing is off)."""
    if enabled():
        from opentelemetry import propagate

        propagate.inject(carrier)
