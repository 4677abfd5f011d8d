"""Logs: plain text, or (``log_format = "json"``) one JSON object per line with the time, level,
logger and message, plus the ids of what the line is about — ``job_id``, ``audit_id``,
``tenant_id``, ``task``, ``task_id``, ``duration_s`` — from the context (``bound``: a worker binds
a task's ids for the task's length) or from the call's ``extra``. Set up once per process."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from shared.config import Settings

FIELDS = ("job_id", "audit_id", "tenant_id", "task", "task_id", "outcome", "duration_s", "attempt", "status_code")
CONTEXT: ContextVar[dict[str, Any]] = ContextVar("smoothguard_log_context", default={})  # noqa: B039 (never mutated)
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")  # uvicorn's own handlers: through ours in JSON
_configured = False


class JsonFormatter(logging.Formatter):
    """One line of JSON per record: the context's ids, then the record's ``extra`` ids."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= CONTEXT.get()
        line |= {k: getattr(record, k) for k in FIELDS if getattr(record, k, None) is not None}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(settings: Settings) -> None:
    """The root logger at INFO, in the settings' format (the first call in a process decides)."""
    global _configured
    if _configured:
        return
    _configured = True
    if settings.log_format != "json":
        logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in SERVER_LOGGERS:
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def adopt(logger: logging.Logger, settings: Settings) -> None:
    """A logger another library set up (Celery's root and task loggers in a worker) writes in the
    settings' format too: its handlers get the JSON formatter."""
    global _configured
    _configured = True
    if settings.log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())


def bind(**fields: Any) -> object:
    """Add ``fields`` (None ones left out) to this context's log lines; ``unbind`` the token to undo."""
    return CONTEXT.set(CONTEXT.get() | {k: str(v) for k, v in fields.items() if v is not None})


def unbind(token: object) -> None:
    CONTEXT.reset(token)  # type: ignore[arg-type]


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def context() -> dict[str, Any]:
    """The ids bound now."""
    return CONTEXT.get()
