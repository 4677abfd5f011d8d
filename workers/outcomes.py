"""How tasks end jobs and audits: the webhook when one finishes, ``failed`` when a step raises;
a finished defense job of an audit moves its audit on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shared.audits import fail_audit
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs import fail
from shared.models import Audit, Job
from workers.celery_app import send


def notify(job: Job) -> None:
    """After a job finished (callers send this after their transaction committed): its webhook, or
    for an audit's defense job, the audit's progress step."""
    if job.audit_item_id is not None:
        send("audits.item_done", [str(job.audit_item_id)])
    elif job.callback_url:
        send("webhooks.deliver", [str(job.id), 0])


def notify_audit(audit: Audit) -> None:
    if audit.callback_url:
        send("webhooks.deliver_audit", [str(audit.id), 0])


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


@contextmanager
def failed_audit(audit_id: str) -> Iterator[None]:
    """The same for an audit step: the audit ends ``failed`` with the reason."""
    try:
        yield
    except Exception as exc:
        with session_scope(get_settings().database_url) as session:
            audit = fail_audit(session, audit_id, f"{type(exc).__name__}: {exc}")
        if audit is not None:
            notify_audit(audit)
        raise
