import pytest
from scipy.stats import beta, norm

from shared.smoothing.consensus import certified_radius, consensus, lower_bound, stop_reason, upper_bound


def test_clopper_pearson_matches_beta_quantiles():
    assert lower_bound(8, 10, 0.05) == pytest.approx(beta.ppf(0.05, 8, 3))
    assert upper_bound(8, 10, 0.05) == pytest.approx(beta.ppf(0.95, 9, 2))
    assert lower_bound(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10))
    assert lower_bound(0, 10, 0.05) == 0.0 and upper_bound(10, 10, 0.05) == 1.0


def test_abstains_unless_the_bound_clears_one_half():
    assert not consensus(10, 10, 0.05).abstained  # lower bound 0.741
    assert consensus(7, 10, 0.05).abstained  # lower bound 0.393
    c = consensus(7, 10, 0.05)
    assert c.share == 0.7 and c.count == 7 and c.total == 10


def test_certified_radius_is_sigma_times_inverse_normal():
    c = consensus(100, 100, 0.001, sigma=0.25, space="pixel")
    assert c.certified_radius == pytest.approx(0.25 * norm.ppf(0.001 ** (1 / 100)))
    assert c.radius_space == "pixel"
    assert certified_radius(0.25, 0.5) is None
    assert consensus(6, 10, 0.05, sigma=0.25).certified_radius is None


def test_stop_rule_decides_either_way():
    assert stop_reason(8, 8, 32, 0.01) == "decided"  # 0.01**(1/8) = 0.562
    assert stop_reason(4, 8, 32, 0.01) is None
    assert stop_reason(4, 8, 0, 0.01) == "budget"
    assert stop_reason(3, 8, 2, 0.01) == "futile"  # even 5/10 can't clear 1/2
