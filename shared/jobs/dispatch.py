"""Dispatching: a job's first round goes on its GPU lane only while its tenant has fewer than
``tenant_max_dispatched`` jobs on that lane; the others wait in the database, oldest first. The
lanes (``shared.pipeline``: interactive jobs on ``gpu``, an audit's defense jobs on ``gpu-audits``)
have their slots apart, so a tenant's own audit never holds its interactive jobs in the database.
One tenant's backlog therefore delays another tenant's first job by at most that many rounds per
busy tenant, and the broker's queues stay short enough that the sweeper can tell a waiting job
from a lost message.

The database row is the outbox: a job committed while the broker was down stays undispatched and
is sent by the next dispatch (a submit, a finished job, or the periodic ``cpu.dispatch``).
Messages are sent before the transaction that marks them dispatched commits: a crash in between
sends a duplicate later (harmless: a round is claimed once), never loses one."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import ColumnElement, bindparam, func, select
from sqlalchemy.orm import Session

from shared import pipeline
from shared.config import Settings
from shared.db import session_scope
from shared.faults import QueueUnavailable
from shared.jobs.store import now
from shared.models import Job, Tenant
from shared.pipeline import Sender

log = logging.getLogger(__name__)
UNFINISHED = ("queued", "running")
LANES = (False, True)  # interactive jobs, an audit's defense jobs: each lane has its own slots


def dispatch(settings: Settings, sender: Sender, tenant_id: str | uuid.UUID | None = None) -> int:
    """Send the waiting jobs of ``tenant_id`` (every tenant: None) that free slots allow; how many.
    ``QueueUnavailable`` when the broker is down (nothing is marked: the next dispatch sends them)."""
    sent = 0
    for tenant in waiting_tenants(settings, tenant_id):
        with session_scope(settings.database_url) as session:
            sent += send_waiting(session, settings, sender, tenant)
    return sent


def send_waiting(
    session: Session, settings: Settings, sender: Sender, tenant_id: uuid.UUID, lanes: tuple[bool, ...] = LANES
) -> int:
    """In ``session``'s transaction (the caller commits): the tenant's waiting jobs on ``lanes``
    (``LANES``: both) that its free slots allow, sent and marked dispatched; how many."""
    hold_tenant(session, tenant_id)
    jobs = [
        job
        for audit in lanes
        for job in next_jobs(
            session, tenant_id, audit, settings.tenant_max_dispatched - in_flight(session, tenant_id, audit)
        )
    ]
    sender.send([m for job in jobs for m in pipeline.after_submit(job)])
    for job in jobs:
        job.dispatched_at = job.touched_at = now()
    return len(jobs)


# run by every submit: built once (building a statement costs about what running it does)
LOCK_TENANT = select(Tenant.id).where(Tenant.id == bindparam("tenant_id")).with_for_update(key_share=True)


def in_lane(audit: bool) -> ColumnElement[bool]:
    return Job.audit_item_id.is_not(None) if audit else Job.audit_item_id.is_(None)


IN_FLIGHT = {
    audit: select(func.count(Job.id)).where(
        Job.tenant_id == bindparam("tenant_id"),
        Job.status.in_(UNFINISHED),
        Job.dispatched_at.is_not(None),
        in_lane(audit),
    )
    for audit in LANES
}


def hold_tenant(session: Session, tenant_id: uuid.UUID) -> None:
    """Lock the tenant's row until the transaction ends: one dispatcher per tenant at a time, and a
    submit's last count of its slots is ordered with them (NO KEY UPDATE: inserts of rows that
    reference the tenant are not blocked)."""
    session.execute(LOCK_TENANT, {"tenant_id": tenant_id})


def waiting_tenants(settings: Settings, tenant_id: str | uuid.UUID | None) -> list[uuid.UUID]:
    """Tenants with jobs not dispatched yet (only ``tenant_id``, when given)."""
    with session_scope(settings.database_url) as session:
        query = select(Job.tenant_id).where(Job.status == "queued", Job.dispatched_at.is_(None)).distinct()
        if tenant_id is not None:
            query = query.where(Job.tenant_id == uuid.UUID(str(tenant_id)))
        return list(session.scalars(query))


def in_flight(session: Session, tenant_id: uuid.UUID, audit: bool) -> int:
    """The tenant's dispatched, unfinished jobs on one lane (its audits' with ``audit``)."""
    return session.scalar(IN_FLIGHT[audit], {"tenant_id": tenant_id}) or 0


def next_jobs(session: Session, tenant_id: uuid.UUID, audit: bool, free: int) -> list[Job]:
    """The tenant's next ``free`` waiting jobs on one lane, locked, oldest first."""
    if free <= 0:
        return []
    query = (
        select(Job)
        .where(Job.tenant_id == tenant_id, Job.status == "queued", Job.dispatched_at.is_(None), in_lane(audit))
        .order_by(Job.created_at, Job.id)
        .limit(free)
        .with_for_update(skip_locked=True)
    )
    return list(session.scalars(query))


def commit_and_dispatch(session: Session, settings: Settings, sender: Sender, tenant_id: uuid.UUID) -> None:
    """Commit an interactive submit's transaction, then dispatch its tenant's waiting interactive
    jobs (the new one among them) in a transaction of its own in ``session`` — unless every
    interactive slot of the tenant is taken: then the job waits for the dispatch that follows each
    finished job (the audit lane is dispatched by its audits, finished jobs and the beat; a submit
    costs the same queries as with one lane). The slots are counted
    holding the tenant's row, as dispatchers do: a job that finishes after the count is followed by
    a dispatch that starts after this commit, so it finds the new job. Under a burst of submits the
    slots are full, and a submit costs one transaction. With the broker down the job stays
    committed and waiting, and the periodic dispatch sends it once the broker is back (the submit
    still succeeds)."""
    hold_tenant(session, tenant_id)
    full = in_flight(session, tenant_id, audit=False) >= settings.tenant_max_dispatched
    session.commit()
    if full:
        return
    try:
        send_waiting(session, settings, sender, tenant_id, lanes=(False,))  # the audit lane: its own dispatches
        session.commit()
    except QueueUnavailable:
        session.rollback()
        log.warning("the queue is unavailable: tenant %s's jobs wait for the next dispatch", tenant_id)
