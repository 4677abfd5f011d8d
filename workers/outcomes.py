"""How the GPU and CPU tasks end a job: its webhook when it finishes, ``failed`` when a step raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared.config import get_settings
from shared.db import session_scope
from shared.jobs import fail
from shared.models import Job
from workers.celery_app import send


def notify(job: Job) -> None:
    """Queue the webhook of a finished job; callers send it after their transaction committed."""
    if job.callback_url:
        send("webhooks.deliver", [str(job.id), 0])


@contextmanager
def failed(job_id: str) -> Iterator[None]:
    """An exception inside ends the job ``failed`` with the reason, then propagates (logged)."""
    try:
        yield
    except Exception as exc:
        with session_scope(get_settings().database_url) as session:
            job = fail(session, job_id, f"{type(exc).__name__}: {exc}")
        if job is not None:
            notify(job)
        raise
