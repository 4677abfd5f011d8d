"""Metrics against hand-computed numbers."""

import pytest

from shared.benchmarks.metrics import attack_success_rate, pope_metrics, utility_retention


def test_pope_metrics_hand_computed():
    # labels:      yes yes yes no  no  no  no  yes
    # predictions: yes no  yes yes no  no  no  yes   -> TP=3 FN=1 FP=1 TN=3
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "yes"]
    preds = ["yes", "no", "yes", "yes", "no", "no", "no", "yes"]
    m = pope_metrics(preds, labels)
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(0.75)
    assert m["yes_ratio"] == pytest.approx(4 / 8)


def test_pope_metrics_asymmetric_and_edge_cases():
    # TP=1 FP=2 FN=1 TN=0: precision 1/3, recall 1/2, f1 = 2*(1/6)/(5/6) = 0.4
    m = pope_metrics(["yes", "yes", "yes", "no"], ["yes", "no", "no", "yes"])
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1 / 3, 1 / 2, 0.4))
    assert m["accuracy"] == pytest.approx(0.25) and m["yes_ratio"] == pytest.approx(0.75)
    # everything "no": no positive predictions, precision/recall/f1 0 instead of a division by zero
    m = pope_metrics(["no", "No"], ["yes", "no"])
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"], m["yes_ratio"]) == (0.0, 0.0, 0.0, 0.5, 0.0)
    assert pope_metrics([], [])["n"] == 0
    with pytest.raises(ValueError):
        pope_metrics(["yes"], [])


def test_attack_success_rate_ignores_unjudged():
    assert attack_success_rate([True, False, None, True]) == pytest.approx(2 / 3)
    assert attack_success_rate([None, None]) is None
    assert attack_success_rate([]) is None
    assert attack_success_rate([False, False]) == 0.0


def test_utility_retention():
    assert utility_retention(0.81, 0.9) == pytest.approx(0.9)
    assert utility_retention(0.9, 0.9) == pytest.approx(1.0)
    assert utility_retention(0.5, 0.0) is None
