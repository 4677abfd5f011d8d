"""``AttackConfig``: defaults, derived values and refusals with clear messages."""

import pytest

from shared.attacks import AttackConfig


def test_defaults_and_derived_step_size():
    c = AttackConfig()
    assert (c.method, c.norm, c.steps, c.targeted, c.universal) == ("pgd", "linf", 40, True, False)
    assert c.eps == pytest.approx(16 / 255)
    assert c.alpha == pytest.approx(2.5 * c.eps / 40)
    assert AttackConfig(step_size=0.01).alpha == 0.01
    assert (c.draws, AttackConfig(method="eot", eot_samples=5).draws) == (1, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "fgsm"}, "method"),
        ({"norm": "l1"}, "norm"),
        ({"eps": 0}, "eps"),
        ({"eps": 2.0}, "eps"),
        ({"steps": 0}, "steps"),
        ({"step_size": -1.0}, "step_size"),
        ({"eot_samples": 0}, "eot_samples"),
        ({"sigma": -0.1}, "sigma"),
        ({"noise_space": "latent"}, "noise_space"),
        ({"stop_loss": 0.0}, "stop_loss"),
    ],
)
def test_invalid_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttackConfig(**kwargs)


def test_l2_eps_may_exceed_one():
    assert AttackConfig(norm="l2", eps=3.0).eps == 3.0
