"""An attack's ``label``: one method twice in one audit (PGD in L2 and in L∞), keyed by label in
variants, refs, outputs, report rows and the summary; specs without labels behave as before."""

import uuid
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from shared.audits import attack as attack_mod
from shared.audits.attack import ChunkItem, attack_items
from shared.audits.report import threat_of
from shared.audits.spec import AuditSpec
from shared.audits.store import VariantOutput
from shared.reports import summarize
from tests.reports.rows import make_row as r

TWO_PGD = {
    "attacks": [
        {"name": "pgd", "label": "pgd-l2", "norm": "l2", "eps": 0.5},
        {"name": "pgd", "label": "pgd-linf", "norm": "linf", "eps": 16 / 255},
        {"name": "eot", "norm": "l2", "eps": 0.5},
    ],
    "defense": {"sigmas": [0.25, 0.5]},
}


def test_two_pgd_variants_with_different_norms_coexist_keyed_by_label():
    spec = AuditSpec.model_validate(TWO_PGD)
    assert spec.variants() == ["clean", "pgd-l2", "pgd-linf", "eot"]
    assert spec.refs()[:4] == ["clean@0.25", "clean@0.5", "pgd-l2@0.25", "pgd-l2@0.5"]
    assert "pgd-linf@0.5" in spec.refs() and "eot@0.25" in spec.refs() and len(spec.refs()) == 8
    assert spec.model_dump(mode="json")["attacks"][2]["label"] is None  # stored as given


def test_a_spec_without_labels_behaves_as_before():
    spec = AuditSpec.model_validate({"attacks": [{"name": "pgd"}, {"name": "eot"}], "defense": {"sigmas": [0.1]}})
    assert spec.variants() == ["clean", "pgd", "eot"] and spec.refs() == ["clean@0.1", "pgd@0.1", "eot@0.1"]
    assert [a.variant for a in spec.attacks] == ["pgd", "eot"]
    with pytest.raises(ValidationError, match="at most once"):
        AuditSpec.model_validate({"attacks": [{"name": "pgd"}, {"name": "pgd"}]})


@pytest.mark.parametrize(
    "attacks",
    [
        [{"name": "pgd", "label": "x"}, {"name": "eot", "label": "x"}],  # duplicate labels
        [{"name": "pgd", "label": "eot"}, {"name": "eot"}],  # a label equal to another's name
        [{"name": "pgd", "label": "clean"}],  # the clean image's variant
        [{"name": "pgd", "label": "a@b"}],  # would break refs
        [{"name": "universal", "label": "u1"}, {"name": "universal", "label": "u2"}],  # one universal image
    ],
)
def test_labels_are_unique_safe_and_not_clean(attacks):
    with pytest.raises(ValidationError):
        AuditSpec.model_validate({"attacks": attacks})


def test_attack_outputs_and_threat_models_are_keyed_by_label(monkeypatch):
    spec = AuditSpec.model_validate(TWO_PGD)
    calls = []

    def fake_attack(generator, images, prompts, goals, config):
        calls.append((config.method, config.norm))
        n = len(images)
        return SimpleNamespace(images=images, losses=[0.1] * n, linf=[0.05] * n, l2=[0.4] * n, steps=3, ms=1.0)

    import shared.attacks

    monkeypatch.setattr(shared.attacks, "attack_images", fake_attack)
    from PIL import Image

    items = [ChunkItem("Is there a circle?", Image.new("RGB", (8, 8)), "no")]
    (row,) = attack_items(None, spec, items, ["yes"], None)
    assert list(row) == ["clean", "pgd-l2", "pgd-linf", "eot"]
    assert calls == [("pgd", "l2"), ("pgd", "linf"), ("eot", "l2")]
    audit = SimpleNamespace(universal=None)
    out = VariantOutput(media_id=uuid.uuid4(), l2=0.4, linf=0.05, targeted=True)
    linf = threat_of(spec, audit, "pgd-linf", out)  # type: ignore[arg-type]
    assert (linf["attack_norm"], linf["threat_model"]) == ("linf", "pgd-linf: L∞ ε=0.06275, targeted")
    assert threat_of(spec, audit, "pgd-l2", out)["attack_norm"] == "l2"  # type: ignore[arg-type]
    assert attack_mod.attack_config(spec, spec.attacks[2], targeted=True).sigma == 0.25


def test_the_summary_is_keyed_by_label():
    rows = [r("a", "clean", None, correct=True), r("a", "clean", 0.25, correct=True)]
    for variant in ("pgd-l2", "pgd-linf"):
        rows += [
            r("a", variant, None, correct=False, attack_success=True),
            r("a", variant, 0.25, correct=True, attack_success=False),
        ]
    summary = summarize(rows)
    assert summary["attacks"] == ["pgd-l2", "pgd-linf"]
    assert summary["headline"][0]["asr"] == {"pgd-l2": 1.0, "pgd-linf": 1.0}
    assert summary["headline"][1]["asr"] == {"pgd-l2": 0.0, "pgd-linf": 0.0}


def test_labelled_variants_keep_the_audits_order_after_the_known_ones():
    rows = [r("a", v, None, correct=True) for v in ("clean", "pgd-l2", "eot-l2", "pgd", "pgd-linf")]
    assert summarize(rows)["attacks"] == ["pgd", "pgd-l2", "eot-l2", "pgd-linf"]
