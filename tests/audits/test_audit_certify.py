"""Certification as an audit mode on the real stack, with the bundled noise-robust demo model: an
L2 PGD attack, CERTIFY with pixel noise, and a report whose rows name the threat model and
whether each certificate covers its perturbation — and no committed wrong answer is covered."""

import csv
import io
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

import shared
from api.schemas import AuditSummary
from shared.benchmarks.shapes import COLOURS
from shared.db import session_scope
from shared.models import AuditItem, Job
from shared.reports.render import FIELDS
from tests.audits.test_audits import QUEUES, wait_audit
from tests.helpers import assert_typed_exactly, auth

ROBUST = str(Path(shared.__file__).parent / "assets" / "demo-llava-robust")
SIGMA, EPS = 0.25, 0.25
NEW_COLUMNS = ("threat_model", "perturbation_l2", "perturbation_linf", "certified_radius", "covered", "certificate")


@pytest.fixture()
def service_env(service_env):
    return service_env | {"SMOOTHGUARD_KNOWN_MODELS": ROBUST}


def certify_spec():
    return {
        "dataset": {"format": "shapes", "seed": 7, "count": 2},  # yes/no: yes, no; colours: red, yellow
        "model": ROBUST,
        "attacks": [{"name": "pgd", "norm": "l2", "eps": EPS, "steps": 5}],
        "defense": {
            "sigmas": [SIGMA],
            "noise_space": "pixel",
            "certify": True,
            "certify_n0": 8,
            "num_samples": 32,
            "max_new_tokens": 4,
        },
        "chunk_size": 4,
    }


def job_answer_sets(database, audit_id):
    with session_scope(database) as s:
        query = select(AuditItem.kind, Job.params).join(AuditItem, Job.audit_item_id == AuditItem.id)
        rows = s.execute(query.where(AuditItem.audit_id == uuid.UUID(audit_id))).all()
        return {(kind, tuple(p["answer_set"] or ()), p["certify"]) for kind, p in rows}


@pytest.mark.slow
def test_a_certifying_audit_reports_threat_models_and_covers_no_wrong_answer(client, keys, spawn_worker, settings):
    key = keys["alpha"]
    spawn_worker(QUEUES)
    r = client.post("/v1/audits", headers=auth(key), json=certify_spec())
    assert r.status_code == 202, r.text
    audit_id = r.json()["id"]
    audit = wait_audit(client, key, audit_id, timeout=300)
    assert audit["status"] == "succeeded", audit
    # each item's jobs got its kind's answer set: yes/no, or the synthetic set's whole colour
    # vocabulary (this draw's labels alone are red and yellow; a one-colour draw would certify nothing)
    assert job_answer_sets(settings.database_url, audit_id) == {
        ("yes_no", ("yes", "no"), True),
        ("closed", tuple(sorted(COLOURS)), True),
    }
    assert audit["summary"]["certification"]["coverage"] and audit["summary"]["certification"]["accuracy"]
    assert_typed_exactly(AuditSummary, audit["summary"])
    report = client.get(f"/v1/audits/{audit_id}/report?format=json", headers=auth(key)).json()
    rows = report["items"]
    attacked = [r for r in rows if r["variant"] == "pgd" and r["sigma"] == SIGMA]
    assert len(attacked) == 4
    for row in attacked:
        assert row["threat_model"].startswith("pgd: L2 ε=0.25") and row["attack_norm"] == "l2"
        assert 0 < row["perturbation_l2"] <= EPS + 1e-6 and row["perturbation_linf"] <= 1
        assert row["certified"] is not None and row["radius_space"] == "pixel" and row["max_radius"] > 0
        assert isinstance(row["covered"], bool) and row["certificate"].startswith(("covers", "does not", "abstained"))
        if row["certified"]:
            assert row["certified_radius"] > 0 and row["certified_label"] in ("yes", "no", "red", "yellow")
    # the guarantee, on real data: a certificate that covers the perturbation never backs a wrong answer
    covered = [r for r in attacked if r["covered"]]
    assert covered  # the robust model certifies radii past these perturbations (≈0.34 vs ≈0.19 here)
    assert all(r["certified_label"] == r["label"] and not r["abstained"] for r in covered)
    certification = report["summary"]["certification"]
    assert certification["covered_wrong"] == 0 and audit["summary"]["certification"] == certification
    (accuracy,) = certification["accuracy"]
    assert accuracy["sigma"] == SIGMA and accuracy["n"] == 4 and accuracy["points"][0]["radius"] == 0.0
    assert all(p["radius"] <= accuracy["max_radius"] for p in accuracy["points"])
    (pgd,) = certification["coverage"]
    assert (pgd["n"], pgd["covered"]) == (4, len(covered))
    text = client.get(f"/v1/audits/{audit_id}/report?format=csv", headers=auth(key)).text
    assert set(NEW_COLUMNS) <= set(FIELDS) and len(list(csv.DictReader(io.StringIO(text)))) == 4 * 2 * 2
    html = client.get(f"/v1/audits/{audit_id}/report?format=html", headers=auth(key)).text
    assert "<h2>Certification" in html and "Committed wrong answers covered by their certificate" in html
