"""The demo's plan and what it prints (no services): the audits it submits are valid specs with
labelled L2 and L∞ attacks and CERTIFY in pixel space; the certification tables read right."""

import pytest

from shared.audits.spec import AuditSpec
from shared.config import DEMO_AUDIO_MODEL
from shared.reports import summarize
from shared.tools.audit_tables import (
    certificate_check,
    certification_report,
    certified_accuracy_table,
    coverage_lines,
    side_by_side,
)
from shared.tools.cli import build_parser
from shared.tools.demo import ROBUST_DEMO_MODEL, AudioPlan, DemoPlan, audio_spec, demo_models, demo_spec
from tests.reports.test_certification import ROWS


def test_the_default_plan_is_a_certifying_audit_with_l2_and_linf_attacks():
    spec = AuditSpec.model_validate(demo_spec(DemoPlan.fast(), str(ROBUST_DEMO_MODEL), None))
    assert spec.variants() == ["clean", "pgd-l2-0.5", "eot-l2-0.5", "pgd-linf-16"]
    assert [(a.name, a.norm, round(a.eps, 4)) for a in spec.attacks] == [
        ("pgd", "l2", 0.5),
        ("eot", "l2", 0.5),
        ("pgd", "linf", round(16 / 255, 4)),
    ]
    eot = spec.attacks[1]
    assert (
        eot.eot_samples == 8 and spec.eot_sigma(eot) == 0.25 and all(a.steps == 40 and a.targeted for a in spec.attacks)
    )
    d = spec.defense
    assert (d.certify, d.noise_space, d.sigmas, d.alpha) == (True, "pixel", [0.25, 0.5], 0.01)
    assert spec.model == str(ROBUST_DEMO_MODEL) and [m for _, m in demo_models()][1] == str(ROBUST_DEMO_MODEL)


def test_the_full_plan_sweeps_three_sigmas_and_three_l2_radii():
    spec = AuditSpec.model_validate(demo_spec(DemoPlan.full(), "m", "http://127.0.0.1:1/hook"))
    assert spec.defense.sigmas == [0.12, 0.25, 0.5] and spec.defense.num_samples == 100
    assert len(spec.attacks) == 7 and spec.variants()[-1] == "pgd-linf-16"
    assert {a.label for a in spec.attacks if a.norm == "l2"} == {
        f"{m}-l2-{e}" for m in ("pgd", "eot") for e in ("0.25", "0.5", "1")
    }


def test_the_audio_half_is_a_certifying_waveform_audit_of_the_audio_demo_model():
    spec = AuditSpec.model_validate(audio_spec(AudioPlan(), None))
    assert spec.model == str(DEMO_AUDIO_MODEL) and spec.dataset.format == "tones" and spec.dataset.modality == "audio"
    assert spec.variants() == ["clean", "pgd-l2-0.1", "eot-l2-0.1", "pgd-l2-1", "eot-l2-1", "pgd-linf-0.02"]
    assert [(a.name, a.norm, a.eps) for a in spec.attacks][-1] == ("pgd", "linf", 0.02)
    d = spec.defense
    assert (d.certify, d.noise_space, d.sigmas, d.num_samples) == (True, "waveform", [0.05, 0.1], 100)


def test_the_demo_flags_override_the_plan():
    args = build_parser().parse_args(["demo", "--images", "2", "--steps", "5", "--num-samples", "20"])
    assert (args.images, args.steps, args.num_samples, args.full, args.modality) == (2, 5, 20, False, "all")
    assert build_parser().parse_args(["demo", "--modality", "audio", "--clips", "3"]).clips == 3
    assert DemoPlan.fast(images=2, steps=5).images == 2 and DemoPlan.full(steps=5).images == 12


@pytest.fixture(scope="module")
def summary():
    return summarize(ROWS)


def test_certified_accuracy_sits_next_to_cohen_et_al_at_the_same_sigma(summary):
    lines = certified_accuracy_table(summary).splitlines()
    head = lines[0].split()
    assert head[:5] == ["σ", "certified", "accuracy", "of", "abstain"]
    assert head[5:10] == ["r=0", "r=0.125", "r=0.25", "r=0.5", "r=1"] and lines[0].endswith("max r (n draws)")
    mine = next(line for line in lines if line.startswith("0.25 "))
    assert (
        "this model (3 clean items)" in mine
        and mine.split()[6:11] == ["0.0%", "66.7%", "66.7%", "33.3%", "–"]
        and "0.336" in mine
    )
    cohen = lines[lines.index(mine) + 1]
    assert "Cohen et al., CIFAR-10" in cohen and "75.0%" in cohen and "60.0%" in cohen and "43.0%" in cohen
    # σ = 0.1 has no Cohen row, and its draws certify no radius
    low = next(line for line in lines if line.startswith("0.1 "))
    assert "100.0%" in low and lines[lines.index(low) + 1].startswith("0.25")


def test_coverage_lines_label_l2_as_certified_and_linf_as_outside(summary):
    lines = coverage_lines(summary).splitlines()
    pgd = next(line for line in lines if line.startswith("pgd "))
    eot = next(line for line in lines if line.startswith("eot "))
    assert "L2 ε=0.25" in pgd and "3/3" in pgd and "L2 (certified where covered)" in pgd
    assert "L∞ ε=16/255" in eot and "1/2" in eot and "L∞ (outside what smoothing certifies)" in eot


def test_the_certificate_check_counts_covered_wrong_answers(summary):
    assert certificate_check(summary) == (
        "committed wrong answers covered by a certificate: 1 of 2 covered answers (1 where the smoothed model "
        "certifies the same wrong answer on the clean image, as the certificate says it must; 0 contradicting a "
        "certificate)"
    )
    text = certification_report(summary, 8, 100, 0.01)
    assert "n0=8 selection, n=100 estimation draws, α=0.01" in text
    assert "L∞ rows are outside what smoothing certifies" in text and "Only empirical" in text


def test_side_by_side_puts_the_models_in_columns(summary):
    lines = side_by_side([("original", summary), ("robust", summary)]).splitlines()
    assert lines[0].split() == ["σ", "original", "robust"]
    assert lines[2].startswith("undefended") and "clean accuracy" in lines[2]
    at_01, at_025 = [line.split()[-2:] for line in lines if "certified accuracy at r=0.25" in line]
    assert at_01 == ["–", "–"] and at_025 == ["33.3%", "33.3%"]  # σ = 0.1's draws certify no radius
    assert any(line.strip().startswith("ASR pgd (not abstained)") for line in lines)
