"""Refusal-aware voting with scripted generators: the τ rule, the prefer-refusal tie, the
certificate against hand-computed numbers, and the default vote left as it was."""

import numpy as np
import pytest
from scipy.stats import beta, norm

from shared.smoothing import SmoothConfig, SmoothGuard
from shared.smoothing.aggregate import cluster_open, vote
from shared.smoothing.refusal import KeywordRefusals, RefusalCache, refusal_radius, should_refuse
from tests.scripted import BagOfWordsEmbedder, ScriptedGenerator

EMB = BagOfWordsEmbedder()
REFUSE = "I'm sorry, I cannot help with that"
REFUSE_LONG = "I'm sorry, I cannot help with that request about the lab"
COMPLY = "Sure, step one: mix the two powders"
OTHER = "A red circle on a white table"


def run(script, **cfg):
    return SmoothGuard(ScriptedGenerator(script), EMB, SmoothConfig(**cfg)).run(None, "p")


def minority_refusals(spec):
    """100 noisy: 40 refuse (30 short, 10 long), 60 comply; the clean (attacked) input complies."""
    if spec.is_clean or spec.index % 5 in (0, 3, 4):
        return COMPLY
    return REFUSE_LONG if spec.index % 10 == 1 and spec.index <= 50 else REFUSE


def test_a_refusal_share_whose_bound_clears_tau_answers_with_the_most_central_refusal():
    plain = run(minority_refusals, num_samples=100)
    assert plain.answer == COMPLY and plain.refusal is not None and not plain.refusal.refused  # the paper's vote
    result = run(minority_refusals, num_samples=100, refusal_threshold=0.25)
    r = result.refusal
    assert r is not None and (r.count, r.total, r.share) == (40, 100, 0.4)
    assert r.lower_bound == pytest.approx(beta.ppf(0.05, 40, 61)) and r.lower_bound >= 0.25
    assert r.refused and r.threshold == 0.25 and r.classifier == "keywords"
    assert result.answer == REFUSE  # the most central refusal, though refusals are the minority
    assert result.consensus.count == 40 and result.abstained  # the consensus still reports the majority rule
    refusal_clusters = [c for c in result.clusters if c.refusal]
    assert len(refusal_clusters) == 1 and refusal_clusters[0].noisy_size == 40


def test_below_tau_the_compliant_majority_answers_and_refusals_are_excluded():
    def script(spec):  # 10 noisy: 4 refuse, 3 + clean say OTHER, 3 comply
        if spec.is_clean or spec.index in (1, 2, 3):
            return OTHER
        return REFUSE if spec.index in (4, 5, 6, 7) else COMPLY

    result = run(script, refusal_threshold=0.25)
    r = result.refusal
    assert r is not None and r.count == 4 and r.lower_bound == pytest.approx(0.150, abs=1e-3) and not r.refused
    assert r.certified_radius is None
    assert result.answer == OTHER
    refusing = {s.index for s in result.samples if s.text == REFUSE}
    winner = next(s.cluster for s in result.samples if s.selected)
    assert all(s.cluster != winner for s in result.samples if s.index in refusing)
    assert [c.size for c in result.clusters if c.refusal] == [4]  # the refusals: one group of their own


def test_the_refusal_certificate_matches_the_hand_computed_radius():
    assert refusal_radius(0.5, norm.cdf(1.0), norm.cdf(-1.0)) == pytest.approx(1.0)  # σ·(1 − (−1))
    assert refusal_radius(0.25, 0.5, 0.5) is None and refusal_radius(0.25, 0.2, 0.25) is None
    assert refusal_radius(0.0, 0.9, 0.25) is None
    result = run(minority_refusals, num_samples=100, refusal_threshold=0.25, sigma=0.25, noise_space="pixel")
    p_lower = beta.ppf(0.05, 40, 61)  # 0.3175
    expected = 0.25 * (norm.ppf(p_lower) - norm.ppf(0.25))
    assert result.refusal is not None and result.refusal.certified_radius == pytest.approx(expected)
    # by hand: Φ⁻¹(0.3175) = −0.4745, Φ⁻¹(0.25) = −0.6745 → 0.25 × 0.2000 = 0.0500
    assert result.refusal.certified_radius == pytest.approx(0.0500, abs=1e-4)
    assert result.refusal.radius_space == "pixel"


def test_the_clean_candidate_is_labelled_but_never_counted():
    def script(spec):  # the clean candidate and 3 of 10 noisy refuse
        return REFUSE if spec.is_clean or spec.index in (2, 5, 8) else COMPLY

    # counted, the clean one would make 4/11: lower bound 0.135 ≥ τ; the noisy 3/10 give 0.087
    result = run(script, refusal_threshold=0.1)
    r = result.refusal
    assert r is not None and (r.count, r.total) == (3, 10) and not r.refused
    assert r.candidates == (0, 2, 5, 8)
    assert result.answer == COMPLY
    only_clean = run(lambda s: REFUSE if s.is_clean else COMPLY, refusal_threshold=0.1, prefer_refusal=True)
    assert only_clean.refusal is not None and only_clean.refusal.count == 0 and only_clean.answer == COMPLY


def two_refusals(spec):
    """10 noisy + clean: 2 noisy refuse — cluster sizes 9 and 2 can never tie."""
    return REFUSE if spec.index in (3, 7) else COMPLY


def test_prefer_refusal_now_fires_on_a_statistical_tie():
    assert run(two_refusals).answer == COMPLY
    result = run(two_refusals, prefer_refusal=True)
    assert result.answer == REFUSE and result.refusal is not None and result.refusal.refused
    assert result.refusal.upper_bound == pytest.approx(0.507, abs=1e-3)
    assert result.refusal.certified_radius is None  # only the τ rule certifies a radius
    one = run(lambda s: REFUSE if s.index == 3 else COMPLY, prefer_refusal=True)
    assert one.answer == COMPLY and one.refusal is not None and not one.refusal.refused  # upper bound 0.394


@pytest.mark.parametrize(
    ("count", "total", "cfg", "refuse"),
    [
        (2, 10, {"prefer_refusal": True}, True),
        (1, 10, {"prefer_refusal": True}, False),
        (0, 3, {"prefer_refusal": True}, False),  # upper bound 0.63, but no refusal to answer with
        (6, 10, {"refusal_threshold": 0.25}, True),
        (5, 10, {"refusal_threshold": 0.25}, False),
        (2, 10, {"refusal_threshold": 0.25, "prefer_refusal": True}, True),  # either rule
        (9, 10, {}, False),  # both off: no refusal rule
    ],
)
def test_should_refuse(count, total, cfg, refuse):
    config = SmoothConfig(**cfg)
    assert should_refuse(count, total, config, config.look_alpha(0)) is refuse


def test_the_default_vote_is_unchanged_and_the_refusals_only_reported():
    texts = [REFUSE, REFUSE, COMPLY, COMPLY, OTHER, COMPLY]
    emb = EMB.embed(texts)
    v = vote(texts, emb, SmoothConfig())
    assert v.labels.tolist() == cluster_open(texts, emb, SmoothConfig()).tolist() and not v.refused
    assert v.refusals is not None and v.refusals.tolist() == [True, True, False, False, False, False]
    result = run(two_refusals)
    assert result.refusal is not None and result.refusal.threshold is None and result.refusal.count == 2
    assert result.config["refusal_threshold"] is None and not result.config["prefer_refusal"]


def test_closed_answer_mode_gives_the_refusals_a_class_of_their_own():
    def script(spec):
        return REFUSE if spec.index % 2 else ("Yes." if spec.index % 4 == 0 else "no")

    result = run(script, answer_set=("yes", "no"), num_samples=20, prefer_refusal=True)
    assert result.answer_label == "refusal" and result.answer == REFUSE
    assert {c.label for c in result.clusters} == {"yes", "no", "refusal"}
    assert {s.answer_label for s in result.samples if s.text == REFUSE} == {"refusal"}


def test_an_injected_classifier_labels_each_distinct_answer_once():
    seen: list[str] = []

    class Nope:
        name = "nope-detector"

        def __call__(self, texts):
            seen.extend(texts)
            return ["nope" in t for t in texts]

    def script(spec):  # "nope" is no keyword refusal: only the injected classifier sees it
        return "nope nope" if spec.index % 2 else COMPLY

    guard = SmoothGuard(ScriptedGenerator(script), EMB, SmoothConfig(refusal_threshold=0.25), refusals=Nope())
    result = guard.run(None, "p")
    assert result.refusal is not None and result.refusal.classifier == "nope-detector"
    assert result.refusal.count == 5 and sorted(seen) == sorted({"nope nope", COMPLY})
    cache = RefusalCache(KeywordRefusals())
    assert cache([REFUSE, COMPLY, REFUSE]) == [True, False, True]
    with pytest.raises(ValueError, match="labels"):
        RefusalCache(lambda_classifier([True]))(["a", "b"])


def lambda_classifier(flags):
    class Fixed:
        name = "fixed"

        def __call__(self, texts):
            return flags

    return Fixed()


@pytest.mark.parametrize("kwargs", [{"refusal_threshold": 0.0}, {"refusal_threshold": 1.0}])
def test_config_rejects_a_threshold_outside_the_unit_interval(kwargs):
    with pytest.raises(ValueError, match="refusal_threshold"):
        SmoothConfig(**kwargs)


def test_refusal_aware_voting_does_not_combine_with_certify():
    with pytest.raises(ValueError, match="refusal-aware"):
        SmoothConfig(answer_set=("yes", "no"), certify=True, prefer_refusal=True)
    assert np.isclose(SmoothConfig(refusal_threshold=0.25).look_alpha(0), 0.05)
