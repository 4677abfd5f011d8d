"""PGD / EOT-PGD on the raw waveform of a tiny random Qwen2-Audio checkpoint."""

import numpy as np
import pytest

from shared.attacks import AttackConfig, attack_audio
from shared.media.decode import Waveform, resample

PROMPTS = ["What is this sound?", "Is there speech in the audio?"]
TARGETS = ["yes", "no"]
EPS = 0.01


@pytest.fixture(scope="module")
def tone():
    t = np.arange(6000) / 8000  # 0.75 s at 8 kHz: the attack resamples to the extractor's 16 kHz
    return Waveform((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)


def clean(generator, wave, targeted=True):
    zero = AttackConfig(steps=1, step_size=1e-12, random_start=False, targeted=targeted)
    return attack_audio(generator, wave, PROMPTS, TARGETS, zero).losses


def test_waves_stay_in_the_budget_at_the_extractors_rate(tiny_audio, tone):
    result = attack_audio(tiny_audio, tone, PROMPTS, TARGETS, AttackConfig(eps=EPS, steps=4))
    base = resample(tone, tiny_audio.sample_rate).samples
    assert result.sample_rate == tiny_audio.sample_rate == 16000
    assert len(result.waves) == 2 and all(w.shape == base.shape and w.dtype == np.float32 for w in result.waves)
    for w, linf in zip(result.waves, result.linf, strict=True):
        assert float(np.abs(w - base).max()) <= EPS + 1e-6
        assert linf == pytest.approx(float(np.abs(w - base).max()), abs=1e-6)
        assert float(np.abs(w).max()) <= 1.0
    assert result.ms > 0


def test_targeted_lowers_and_untargeted_raises_the_loss(tiny_audio, tone):
    # small steps from the clean wave: a sign step adds broadband energy, and the log-mel of this
    # pure tone reacts to that far more than to the gradient's direction when the step is large
    config = {"eps": 0.02, "steps": 5, "step_size": 0.001, "random_start": False}
    down = attack_audio(tiny_audio, tone, PROMPTS, TARGETS, AttackConfig(**config)).losses
    up = attack_audio(tiny_audio, tone, PROMPTS, TARGETS, AttackConfig(targeted=False, **config)).losses
    base = clean(tiny_audio, tone)
    assert all(d < c - 0.005 for d, c in zip(down, base, strict=True)), (base, down)
    assert all(u > c + 0.005 for u, c in zip(up, base, strict=True)), (base, up)


def test_eot_and_universal_shapes_and_determinism(tiny_audio, tone):
    eot = AttackConfig(eps=EPS, steps=2, method="eot", eot_samples=3, sigma=0.01, noise_space="waveform")
    a = attack_audio(tiny_audio, tone, PROMPTS, TARGETS, eot)
    b = attack_audio(tiny_audio, tone, PROMPTS, TARGETS, eot)
    assert len(a.waves) == 2 and all(np.array_equal(x, y) for x, y in zip(a.waves, b.waves, strict=True))
    u = attack_audio(tiny_audio, tone, PROMPTS, TARGETS, AttackConfig(eps=EPS, steps=2, universal=True))
    assert len(u.waves) == 1 and len(u.losses) == 1 and len(u.linf) == 1


def test_l2_waves_stay_in_the_l2_ball_and_report_both_norms(tiny_audio, tone):
    eps = 0.5  # amplitude units over the clip's 12,000 samples at 16 kHz
    result = attack_audio(tiny_audio, tone, PROMPTS, TARGETS, AttackConfig(norm="l2", eps=eps, steps=4))
    base = resample(tone, tiny_audio.sample_rate).samples
    for w, l2, linf in zip(result.waves, result.l2, result.linf, strict=True):
        delta = w.astype(np.float64) - base
        assert l2 == pytest.approx(float(np.linalg.norm(delta)), rel=1e-4) and l2 <= eps * (1 + 1e-5)
        assert linf == pytest.approx(float(np.abs(delta).max()), abs=1e-6) and l2 > 0
    assert result.steps == 4


def test_clips_of_different_lengths_are_attacked_in_one_call_each_in_its_own_ball(tiny_audio, tone):
    short = Waveform(tone.samples[:3000], tone.sample_rate)
    config = AttackConfig(eps=EPS, steps=2)
    batched = attack_audio(tiny_audio, [tone, short, tone], [PROMPTS[0], PROMPTS[1], PROMPTS[1]], ["yes"] * 3, config)
    alone = attack_audio(tiny_audio, [short], [PROMPTS[1]], ["yes"], config)
    assert [len(w) for w in batched.waves] == [12000, 6000, 12000]
    np.testing.assert_allclose(batched.waves[1], alone.waves[0], atol=1e-6)  # grouped by length, same result
    assert all(x <= EPS + 1e-6 for x in batched.linf)


@pytest.mark.parametrize(
    ("config", "waves", "message"),
    [
        (AttackConfig(method="eot"), 1, "noise_space='waveform'"),
        (AttackConfig(), 3, "3 waveforms but 2 prompts"),
        (AttackConfig(universal=True), 2, "one waveform"),
    ],
)
def test_audio_refusals(tiny_audio, tone, config, waves, message):
    clips = tone if waves == 1 else [tone] * waves
    with pytest.raises(ValueError, match=message):
        attack_audio(tiny_audio, clips, PROMPTS, TARGETS, config)
