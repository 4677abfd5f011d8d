"""Certification as an audit mode, without the stack: each item's closed answer set by its kind,
the defense job's config it makes, and what the spec still refuses at submit."""

import pytest
from pydantic import ValidationError

from shared.audits.spec import DefenseSpec, answer_set_for


def test_answer_sets_by_item_kind():
    colours = ["red", "blue", "green", "blue"]
    assert answer_set_for("yes_no", colours) == ("yes", "no")
    assert answer_set_for("closed", colours) == ("blue", "green", "red")  # the set's labels, distinct, sorted
    assert answer_set_for("closed", ["Red", "red ", "blue"]) == ("Red", "blue")  # distinct ignoring case
    assert answer_set_for("closed", ["red"]) is None  # one class: nothing to certify against
    assert answer_set_for("open", colours) is None and answer_set_for("safety", colours) is None


def test_a_certifying_audit_certifies_items_with_an_answer_set_and_runs_the_others_uncertified():
    spec = DefenseSpec(certify=True, certify_n0=8, num_samples=32, sigmas=[0.25], noise_space="pixel")
    yes_no = spec.config(0.25, spec.answer_set("yes_no", []))
    assert (yes_no.certify, yes_no.answer_set, yes_no.certify_n0, yes_no.num_samples) == (True, ("yes", "no"), 8, 32)
    closed = spec.config(0.25, spec.answer_set("closed", ["red", "blue"]))
    assert closed.certify and closed.answer_set == ("blue", "red") and closed.noise_space == "pixel"
    open_item = spec.config(0.25, spec.answer_set("open", ["red", "blue"]))
    assert (open_item.certify, open_item.answer_set) == (False, None)
    adaptive = DefenseSpec(certify=True, adaptive=True, target_radius=0.2, sigmas=[0.25])
    assert adaptive.config(0.25).target_radius is None  # no answer set: no certificate, no target
    assert adaptive.config(0.25, ("yes", "no")).target_radius == 0.2


def test_without_certify_audits_set_no_answer_set():
    spec = DefenseSpec(sigmas=[0.1])
    assert spec.answer_set("yes_no", []) is None and spec.answer_set("closed", ["a", "b"]) is None
    assert spec.config(0.1, spec.answer_set("yes_no", [])).answer_set is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sigmas": [0.0]}, "sigma > 0"),
        ({"refusal_threshold": 0.25}, "refusal-aware"),
        ({"prefer_refusal": True}, "refusal-aware"),
        ({"target_radius": 0.2}, "target_radius needs certify and adaptive"),
    ],
)
def test_what_still_cannot_certify_is_refused_at_submit(options, message):
    with pytest.raises(ValidationError, match=message):
        DefenseSpec(certify=True, **options)
