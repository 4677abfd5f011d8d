"""What a task is about, for its log lines and its span: the ids in its arguments (a job's steps
carry the job's id, an audit's the audit's), and the tenant (and audit) that owns a job or audit,
looked up once per id and process (an owner never changes)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from shared.db import get_engine
from shared.models import Audit, AuditItem, Job
from shared.pipeline import Step

log = logging.getLogger(__name__)
SUBJECTS = {  # a step → the name of the id its first argument is
    Step.SAMPLE_ROUND: "job_id",
    Step.AGGREGATE: "job_id",
    Step.DELIVER: "job_id",
    Step.ATTACK_UNIVERSAL: "audit_id",
    Step.ATTACK_CHUNK: "audit_id",
    Step.PREPARE: "audit_id",
    Step.PROGRESS: "audit_id",
    Step.REPORT: "audit_id",
    Step.DELIVER_AUDIT: "audit_id",
    Step.ITEM_DONE: "audit_item_id",
    Step.ROBUSTIFY: "robust_model_id",
    Step.CHECK_DATASET: "dataset_id",
    Step.DISPATCH: "tenant_id",
}


def task_ids(database_url: str, task: str, args: Sequence[Any], *, owners: bool = True) -> dict[str, str]:
    """The ids a run of ``task`` with ``args`` is about; with ``owners``, the tenant (and audit) of
    its job or audit too (one primary-key query per new id, none on a database fault)."""
    name = SUBJECTS.get(Step(task)) if task in Step._value2member_map_ else None
    if name is None or not args:
        return {}
    ids = {name: str(args[0])}
    if owners and name in ("job_id", "audit_id"):
        try:
            ids |= owner_of(database_url, name, ids[name])
        except Exception:  # logs and spans never fail a task
            log.debug("no owner for %s %s", name, ids[name], exc_info=True)
    return ids


@lru_cache(maxsize=4096)
def owner_of(database_url: str, kind: str, subject_id: str) -> dict[str, str]:
    """The tenant (and, for an audit's defense job, the audit) of a job or an audit."""
    key = uuid.UUID(subject_id)
    job = select(Job.tenant_id, AuditItem.audit_id).outerjoin(AuditItem, Job.audit_item_id == AuditItem.id)
    audit = select(Audit.tenant_id)
    with get_engine(database_url).connect() as con:
        found = job.where(Job.id == key) if kind == "job_id" else audit.where(Audit.id == key)
        row = con.execute(found).first()
    if row is None:
        return {}
    return {k: str(v) for k, v in zip(("tenant_id", "audit_id"), row, strict=False) if v is not None}
