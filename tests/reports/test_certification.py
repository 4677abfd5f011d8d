"""Threat models against certificates on hand-made rows: the coverage column, Cohen et al.'s
certified-accuracy table and the covered-wrong count, with hand-checked numbers; and how the
files carry them."""

import csv
import io
import json

import pytest

from shared.reports import render, summarize
from shared.reports.certification import coverage, threat_model
from tests.reports.rows import AUDIT
from tests.reports.rows import make_row as r

# σ = 0.25, 32 estimation draws at α = 0.05: at most 0.25·Φ⁻¹(0.05^(1/32)) = 0.336 certifiable.
MAX = 0.336
L2 = {"attack_norm": "l2", "attack_eps": 0.25, "radius_space": "pixel", "max_radius": MAX}
LINF = {"attack_norm": "linf", "attack_eps": 16 / 255, "radius_space": "pixel", "max_radius": MAX}


def cert(label, radius, **fields):
    """A defended row's certificate fields: certified with ``label`` at ``radius`` (None: abstained)."""
    return {"certified": radius is not None, "certified_label": label, "certified_radius": radius} | fields


def test_an_l2_certificate_covers_a_perturbation_no_longer_than_its_radius():
    row = r("a", "pgd", 0.25, perturbation_l2=0.33, **cert("yes", 0.41, **L2))
    assert coverage(row) == (True, "covers (r=0.41 ≥ ‖δ‖₂=0.33)")
    row = r("a", "pgd", 0.25, perturbation_l2=0.33, **cert("yes", 0.2, **L2))
    assert coverage(row) == (False, "does not cover (r=0.2 < ‖δ‖₂=0.33)")


def test_abstained_uncertified_undefended_and_clean_rows():
    assert coverage(r("a", "pgd", 0.25, perturbation_l2=0.33, **cert("yes", None, **L2))) == (False, "abstained")
    assert coverage(r("s", "pgd", 0.25, perturbation_l2=0.33, attack_norm="l2")) == (None, "not certified")
    assert coverage(r("a", "pgd", None, perturbation_l2=0.33, attack_norm="l2")) == (None, None)
    assert coverage(r("a", "clean", 0.25, **cert("yes", 0.3, **L2))) == (None, "certified (r=0.3)")
    assert coverage(r("a", "clean", 0.25, **cert("yes", None, **L2))) == (None, "abstained")


def test_an_linf_attack_is_outside_what_smoothing_certifies_and_says_both_numbers():
    row = r("a", "eot", 0.25, perturbation_l2=5.7, perturbation_linf=16 / 255, **cert("yes", 0.3, **LINF))
    assert coverage(row) == (False, "L∞ attack (ε=0.0627): outside what smoothing certifies (‖δ‖₂=5.7 vs r=0.3)")


def test_a_normalized_radius_is_not_compared_with_a_pixel_perturbation():
    row = r("a", "pgd", 0.25, perturbation_l2=0.33, **cert("yes", 0.9, **(L2 | {"radius_space": "normalized"})))
    assert coverage(row) == (None, "not comparable (r=0.9 in normalized units, ‖δ‖₂=0.33 in pixels)")


def test_threat_model_names_the_attack_its_norm_and_eps():
    assert threat_model("pgd", "l2", 0.25, True) == "pgd: L2 ε=0.25, targeted"
    assert threat_model("eot", "linf", 16 / 255, False) == "eot: L∞ ε=0.06275, untargeted"


def with_coverage(row):
    row["covered"], row["certificate"] = coverage(row)
    return row


# Items a, c: label yes; b: label no; s: safety (never certified). σ = 0.25 certifies, σ = 0.1's
# 8 draws allow no radius at all (max_radius None).
ROWS = [
    with_coverage(row)
    for row in [
        r("a", "clean", None, correct=True),
        r("b", "clean", None, correct=True),
        r("c", "clean", None, correct=True),
        r("s", "clean", None),
        r("a", "clean", 0.25, correct=True, **cert("yes", 0.30, **L2)),  # right, r ≥ 0.25
        r("b", "clean", 0.25, correct=False, **cert("yes", 0.10, **L2)),  # certified, wrong class
        r("c", "clean", 0.25, correct=True, **cert("yes", 0.20, **L2)),  # right, r ≥ 0.125
        r("s", "clean", 0.25),  # safety: no certificate, not in the table
        r("a", "pgd", 0.25, correct=True, perturbation_l2=0.24, **cert("yes", 0.30, **L2)),  # covered, right
        r("b", "pgd", 0.25, correct=False, perturbation_l2=0.24, **cert("yes", 0.31, **L2)),  # covered, WRONG
        r("c", "pgd", 0.25, correct=False, perturbation_l2=0.25, **cert("no", 0.05, **L2)),  # not covered
        r("a", "eot", 0.25, correct=True, perturbation_l2=5.7, **cert("yes", 0.2, **LINF)),
        r("b", "eot", 0.25, correct=True, perturbation_l2=5.9, **cert("no", None, **LINF)),  # abstained
        r("a", "clean", 0.1, correct=True, **cert("yes", None, **(L2 | {"max_radius": None}))),
    ]
]


@pytest.fixture(scope="module")
def summary():
    return summarize(ROWS)


def test_certified_accuracy_against_radius_per_sigma(summary):
    cert_summary = summary["certification"]
    assert cert_summary["radii"] == [0.0, 0.125, 0.25, 0.5, 1.0]
    at_01, at_025 = cert_summary["accuracy"]
    # 3 certified clean items (safety left out): a (0.30) and c (0.20) right, b wrong; 0.5 > 0.336 is left out
    assert (at_025["sigma"], at_025["n"], at_025["max_radius"], at_025["abstain_rate"]) == (0.25, 3, MAX, 0.0)
    assert [(p["radius"], p["accuracy"]) for p in at_025["points"]] == [(0.0, 2 / 3), (0.125, 2 / 3), (0.25, 1 / 3)]
    assert (at_01["n"], at_01["abstain_rate"], at_01["points"]) == (1, 1.0, [])  # n too small for any radius


def test_coverage_per_attack_and_the_covered_wrong_count(summary):
    pgd, eot = summary["certification"]["coverage"]
    assert (pgd["variant"], pgd["norm"], pgd["eps"], pgd["n"], pgd["certified"]) == ("pgd", "l2", 0.25, 3, 3)
    assert (pgd["covered"], pgd["covered_wrong"]) == (2, 1)
    assert pgd["mean_perturbation_l2"] == pytest.approx(0.73 / 3) and pgd["mean_certified_radius"] == pytest.approx(
        0.22
    )
    assert (eot["norm"], eot["n"], eot["certified"], eot["covered"], eot["covered_wrong"]) == ("linf", 2, 1, 0, 0)
    assert summary["certification"]["covered_wrong"] == 1
    # b's clean image is certified "yes" too (wrong), so its covered wrong answer is what the certificate says
    assert (pgd["covered_wrong_clean_too"], summary["certification"]["covered_wrong_clean_too"]) == (1, 1)
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary


def test_an_audit_without_certificates_has_empty_tables():
    plain = summarize([r("a", "clean", None, correct=True), r("a", "clean", 0.1, correct=True)])
    assert plain["certification"] == {
        "radii": [0.0, 0.125, 0.25, 0.5, 1.0],
        "accuracy": [],
        "coverage": [],
        "covered_wrong": 0,
        "covered_wrong_clean_too": 0,
    }
    assert "Certification" not in render(AUDIT, [], plain)["report.html"].decode()


def test_the_files_carry_the_columns_and_the_tables(summary):
    files = render(AUDIT, ROWS, summary)
    parsed = list(csv.DictReader(io.StringIO(files["items.csv"].decode(), newline="")))
    pgd_b = next(p for p in parsed if p["item"] == "b" and p["variant"] == "pgd")
    assert (pgd_b["covered"], pgd_b["certificate"]) == ("True", "covers (r=0.31 ≥ ‖δ‖₂=0.24)")
    assert (pgd_b["attack_norm"], pgd_b["perturbation_l2"], pgd_b["certified_radius"]) == ("l2", "0.24", "0.31")
    assert json.loads(files["report.json"])["summary"]["certification"]["covered_wrong"] == 1
    html = files["report.html"].decode()
    assert "<h2>Certification" in html and "r ≥ 0.125" in html and "covers (r=0.31 ≥ ‖δ‖₂=0.24)" in html
    assert 'Committed wrong answers covered by their certificate: <span class="bad">1</span>' in html
