"""The EOT attack averages over exactly the defense's noise: for the same candidate (seed, σ,
noise space) the attack's noisy model input equals the one the defense's generator builds."""

import numpy as np
import pytest
import torch

from shared.attacks import AttackConfig, attack_images
from shared.attacks.audio import LogMel, audio_media
from shared.attacks.objective import eot_candidate
from shared.attacks.pgd import image_media
from shared.attacks.pixels import PixelMap
from shared.media.decode import Waveform
from tests.attacks.conftest import PROMPTS, TARGETS, png_round_trip


@pytest.fixture(params=["tiny_llava", "tiny_qwen_vl"])
def generator(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def adversarial(tiny_llava, tiny_qwen_vl, scenes):
    """An attacked image per model: at the resolution the model sees, as the service receives it."""
    config = AttackConfig(steps=1)
    return {
        id(g): png_round_trip(attack_images(g, scenes[:1], PROMPTS[:1], TARGETS[:1], config).images[0])
        for g in (tiny_llava, tiny_qwen_vl)
    }


def test_eot_normalized_draws_are_the_defenses_candidates(generator, adversarial):
    image = adversarial[id(generator)]
    config = AttackConfig(method="eot", sigma=0.3, noise_space="normalized", seed=5)
    pixmap = PixelMap.for_generator(generator)
    x = pixmap.from_image(image).repeat(3, 1, 1, 1)  # three EOT draws of one image
    attack = image_media(generator.model, pixmap, config)(x, True)["pixel_values"]
    defense = generator.prepare(image, PROMPTS[0], [eot_candidate(config, k) for k in range(3)])["pixel_values"]
    assert attack.shape == defense.shape
    torch.testing.assert_close(attack, defense, rtol=0, atol=1e-5)
    blocks = defense.tensor_split(3)
    assert not torch.equal(blocks[0], blocks[1])  # each draw its own seed


def test_eot_pixel_draws_are_the_defenses_candidates(generator, adversarial, monkeypatch):
    """The noisy [0, 1] images, bit for bit: what the defense hands its processor and what the
    attack maps to ``pixel_values`` (the processor's own treatment of float images is its own)."""
    image = adversarial[id(generator)]
    config = AttackConfig(method="eot", sigma=0.3, noise_space="pixel", seed=5)
    pixmap = PixelMap.for_generator(generator)
    attacked = record(monkeypatch, pixmap, "to_pixel_values")
    image_media(generator.model, pixmap, config)(pixmap.from_image(image).repeat(3, 1, 1, 1), True)
    handed = record(monkeypatch, generator, "processor")
    generator.prepare(image, PROMPTS[0], [eot_candidate(config, k) for k in range(3)])
    defense = torch.from_numpy(np.stack(handed[0][1]["images"])).permute(0, 3, 1, 2)
    assert torch.equal(attacked[0][0][0], defense)
    assert defense.min() == 0 and defense.max() == 1  # clipped, as the defense clips


def record(monkeypatch, owner, name):
    """Replace ``owner.name`` (a callable) by one that records its calls' arguments."""
    calls, real = [], getattr(owner, name)

    class Recorder:
        def __getattr__(self, attr):
            return getattr(real, attr)

        def __call__(self, *args, **kwargs):
            calls.append((args, kwargs))
            return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, Recorder())
    return calls


def test_eot_waveform_draws_are_the_defenses_candidates(tiny_audio):
    rate = tiny_audio.sample_rate
    wave = (0.3 * np.sin(np.linspace(0, 400, rate))).astype(np.float32)
    config = AttackConfig(method="eot", sigma=0.02, noise_space="waveform", seed=5)
    media = audio_media(tiny_audio.model, LogMel(tiny_audio.processor.feature_extractor), config)
    features = media(torch.from_numpy(wave).repeat(2, 1), True)["input_features"]
    specs = [eot_candidate(config, k) for k in range(2)]
    noisy = tiny_audio.noisy_waveforms(Waveform(wave, rate), specs)
    expected = tiny_audio.processor.feature_extractor(noisy, sampling_rate=rate, return_tensors="pt")
    torch.testing.assert_close(features, expected["input_features"], rtol=0, atol=1e-4)


def test_eot_seeds_never_repeat_the_defenses():
    from shared.smoothing.noise import plan_round
    from shared.smoothing.types import SmoothConfig

    defense = {s.seed for s in plan_round(SmoothConfig(seed=5, num_samples=64), 0)}
    attack = {eot_candidate(AttackConfig(seed=5), k).seed for k in range(64)}
    assert not defense & attack
