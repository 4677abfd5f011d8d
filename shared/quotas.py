"""Per-tenant quotas on work in flight (submitted, not finished): a tenant over one is refused
(``OverLimit``, 429 with ``Retry-After``) before anything is stored.

Counted: a tenant's unfinished jobs (not the defense jobs its audits fan out: an audit is counted
as one audit), unfinished audits and unfinished robustify runs. Audits and robustify runs lock the
tenant's row while checking, so concurrent submits at the limit queue up and the limit holds
exactly; jobs do not lock (a tenant's job submits stay concurrent), so N submits racing at the
limit may pass it by up to N - 1."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import OverLimit
from shared.models import Audit, Job, RobustModel, Tenant


class Work(StrEnum):
    JOBS = "jobs"
    AUDITS = "audits"
    ROBUST_MODELS = "robust models"


@dataclass(frozen=True)
class Quota:
    setting: str  # the Settings field with the limit (0: none)
    retry_after_s: int  # a guess at when some of that work will have finished
    lock: bool  # serialise the tenant's submits of this kind (exact limit) or not (may pass by a few)


QUOTAS = {
    Work.JOBS: Quota("max_jobs_in_flight", 10, lock=False),
    Work.AUDITS: Quota("max_audits_in_flight", 60, lock=True),
    Work.ROBUST_MODELS: Quota("max_robust_models_in_flight", 60, lock=True),
}


def check_in_flight(session: Session, settings: Settings, tenant: Tenant, work: Work) -> None:
    """Refuse (``OverLimit``) a new piece of ``work`` when the tenant already has its quota of it
    in flight. With ``lock``, the tenant's row stays locked until the caller's transaction ends."""
    quota = QUOTAS[work]
    limit: int = getattr(settings, quota.setting)
    if limit <= 0:
        return
    if quota.lock:  # NO KEY UPDATE: inserts that reference the tenant (its foreign keys) are not blocked
        session.refresh(tenant, with_for_update={"key_share": True})
    if (n := count_in_flight(session, tenant.id, work, limit)) >= limit:
        raise OverLimit(
            f"quota: {n} {work} in flight, the most a tenant may have ({quota.setting} = {limit}); "
            "retry when some have finished",
            quota.retry_after_s,
        )


def count_in_flight(session: Session, tenant_id: uuid.UUID, work: Work, up_to: int) -> int:
    """The tenant's unfinished ``work``, counted up to ``up_to`` (the count stops there)."""
    if work is Work.JOBS:
        rows = select(Job.id).where(Job.tenant_id == tenant_id, Job.finished_at.is_(None), Job.audit_item_id.is_(None))
    elif work is Work.AUDITS:
        rows = select(Audit.id).where(Audit.tenant_id == tenant_id, Audit.finished_at.is_(None))
    else:
        rows = select(RobustModel.id).where(RobustModel.tenant_id == tenant_id, RobustModel.finished_at.is_(None))
    return session.scalar(select(func.count()).select_from(rows.limit(up_to).subquery())) or 0
