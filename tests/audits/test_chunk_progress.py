"""An audit chunk stores each attack as it finishes: a run after the worker died (here: the step
interrupted between two attacks) reads the finished attack back instead of running it again.
In process, on a real PostgreSQL and S3 with the bundled demo model."""

import uuid

import pytest

import shared.attacks
from shared.audits.spec import AuditSpec
from shared.audits.steps import attack_chunk, prepare
from shared.audits.store import create_audit, outputs_of
from shared.config import DEMO_MODEL
from shared.db import session_scope
from shared.models import AuditItem
from shared.tenants import create_tenant

SPEC = {
    "dataset": {"format": "shapes", "seed": 7, "count": 1},  # 1 image, 2 questions: one chunk
    "attacks": [{"name": "pgd", "steps": 2}, {"name": "eot", "steps": 1, "eot_samples": 2}],
    "defense": {"sigmas": [0.1], "num_samples": 3, "max_new_tokens": 4},
    "chunk_size": 2,
}


class WorkerDied(BaseException):
    """Not an ``Exception``: like a SIGKILL, nothing in the step handles it."""


def items(database, audit_id):
    with session_scope(database) as s:
        rows = s.query(AuditItem).filter_by(audit_id=uuid.UUID(audit_id)).order_by(AuditItem.index).all()
        return [(r.attacked_at, outputs_of(r)) for r in rows]


def test_a_rerun_chunk_does_not_repeat_an_attack_that_finished(settings, database, monkeypatch):
    with session_scope(database) as s:
        tenant = create_tenant(s, name=f"t{uuid.uuid4().hex[:6]}")
        audit_id = str(create_audit(s, tenant.id, AuditSpec.model_validate(SPEC), str(DEMO_MODEL)).id)
    prepare(settings, audit_id)
    real, calls = shared.attacks.attack_images, []

    def attack_then_die(*args, **kwargs):
        calls.append(args[4].method)
        if args[4].method == "eot":
            raise WorkerDied
        return real(*args, **kwargs)

    monkeypatch.setattr(shared.attacks, "attack_images", attack_then_die)
    with pytest.raises(WorkerDied):
        attack_chunk(settings, audit_id, 0)
    assert calls[0] == "pgd" and calls[-1] == "eot"  # (one call per group: targeted, untargeted)
    first = items(database, audit_id)
    assert all(at is None and set(out) == {"pgd"} for at, out in first)  # pgd stored, nothing finished

    calls.clear()
    monkeypatch.setattr(shared.attacks, "attack_images", lambda *a, **k: calls.append(a[4].method) or real(*a, **k))
    attack_chunk(settings, audit_id, 0)
    assert set(calls) == {"eot"}  # pgd was read back, not run again
    after = items(database, audit_id)
    assert all(at is not None and set(out) == {"clean", "pgd", "eot"} for at, out in after)
    assert [out["pgd"].media_id for _, out in after] == [out["pgd"].media_id for _, out in first]
    assert all(out["pgd"].answer is not None and out["pgd"].steps == 2 for _, out in after)
