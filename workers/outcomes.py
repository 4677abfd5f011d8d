"""How tasks end jobs and audits: the webhook when one finishes, ``failed`` when a step raises;
a finished defense job of an audit moves its audit on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy.orm import Session

from shared.audits.store import fail_audit
from shared.config import get_settings
from shared.db import session_scope
from shared.jobs.store import fail
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


def failed(job_id: str) -> AbstractContextManager[None]:
    """An exception inside ends the job ``failed`` with the reason, then propagates (logged)."""
    return _ends_failed(job_id, fail, notify)


def failed_audit(audit_id: str) -> AbstractContextManager[None]:
    """The same for an audit step: the audit ends ``failed`` with the reason."""
    return _ends_failed(audit_id, fail_audit, notify_audit)


@contextmanager
def _ends_failed(
    subject_id: str, end: Callable[[Session, str, str], Any], tell: Callable[[Any], None]
) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        with session_scope(get_settings().database_url) as session:
            row = end(session, subject_id, f"{type(exc).__name__}: {exc}")
        if row is not None:
            tell(row)
        raise
