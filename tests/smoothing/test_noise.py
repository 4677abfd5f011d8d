from dataclasses import replace

import numpy as np
import pytest
import torch

from shared.smoothing.noise import candidate_seed, gaussian, noisy_input, plan_round
from shared.smoothing.types import SmoothConfig


def test_seeds_are_derived_from_job_seed_and_index():
    assert candidate_seed(7, 3) == candidate_seed(7, 3)
    seeds = {candidate_seed(7, i) for i in range(1000)}
    assert len(seeds) == 1000
    assert candidate_seed(7, 3) != candidate_seed(8, 3)
    assert all(0 <= s < 2**63 for s in seeds)


def test_fixed_plan_has_clean_first_then_noisy():
    specs = plan_round(SmoothConfig(num_samples=10, sigma=0.2, seed=5), 0)
    assert len(specs) == 11
    assert specs[0].is_clean and specs[0].seed is None and specs[0].sigma == 0 and specs[0].index == 0
    assert [s.index for s in specs] == list(range(11))
    assert all(not s.is_clean and s.sigma == 0.2 and s.seed == candidate_seed(5, s.index) for s in specs[1:])
    assert plan_round(SmoothConfig(num_samples=10), 1) == []


def test_clean_candidate_is_switchable():
    specs = plan_round(SmoothConfig(num_samples=4, include_clean=False), 0)
    assert [s.index for s in specs] == [0, 1, 2, 3] and not any(s.is_clean for s in specs)


def test_adaptive_rounds_partition_the_budget():
    cfg = SmoothConfig(num_samples=20, round_size=8, adaptive=True)
    rounds = [plan_round(cfg, r) for r in range(4)]
    assert [len(r) for r in rounds] == [9, 8, 4, 0]
    indices = [s.index for r in rounds for s in r]
    assert indices == list(range(21))
    assert all(s.round == r for r, specs in enumerate(rounds) for s in specs)


def test_noise_is_reproducible_and_has_the_requested_scale():
    spec = plan_round(SmoothConfig(sigma=0.5, num_samples=1, include_clean=False), 0)[0]
    a, b = gaussian((200, 300), spec), gaussian((200, 300), spec)
    assert torch.equal(a, b)
    assert a.std().item() == pytest.approx(0.5, rel=0.02)
    assert a.mean().item() == pytest.approx(0.0, abs=0.01)


def test_clean_candidate_gets_no_noise():
    clean = plan_round(SmoothConfig(), 0)[0]
    x = torch.randn(3, 8, 8)
    assert torch.equal(noisy_input(x, clean), x)


def test_normalized_noise_is_not_clipped_but_pixel_noise_is():
    spec = plan_round(SmoothConfig(sigma=1.0, num_samples=1, include_clean=False), 0)[0]
    x = torch.zeros(3, 16, 16)
    noisy = noisy_input(x, spec)
    assert noisy.min() < -1 and noisy.max() > 1
    pixel = replace(spec, noise_space="pixel")
    pix = noisy_input(torch.full((16, 16, 3), 0.5), pixel)
    assert pix.min() == 0.0 and pix.max() == 1.0 and pix.dtype == torch.float32
    inside = (pix > 0) & (pix < 1)
    assert torch.equal(pix[inside], (0.5 + gaussian(pix.shape, pixel))[inside])


def test_waveform_noise_matches_the_seeded_draw():
    spec = plan_round(SmoothConfig(sigma=0.01, num_samples=1, include_clean=False, noise_space="waveform"), 0)[0]
    wave = np.sin(np.linspace(0, 100, 4000)).astype(np.float32)
    expected = wave + gaussian(wave.shape, spec).numpy()
    np.testing.assert_array_equal(noisy_input(torch.from_numpy(wave), spec).numpy(), expected)


def test_other_streams_give_other_seeds():
    assert candidate_seed(7, 3, "eot") != candidate_seed(7, 3)
    assert candidate_seed(7, 3, "smoothguard") == candidate_seed(7, 3)
