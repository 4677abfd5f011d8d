"""The ``hf-audio`` generator on a tiny random Qwen2-Audio checkpoint loaded from disk."""

import numpy as np
import pytest
import torch

from shared.backends.hf_audio import HFAudioGenerator
from shared.backends.registry import detect_backend
from shared.media.decode import Waveform, resample
from shared.smoothing.noise import gaussian, plan_round
from shared.smoothing.types import SmoothConfig

PROMPT = "What is this sound?"


@pytest.fixture(scope="module")
def generator(qwen_audio_path):
    return HFAudioGenerator(qwen_audio_path, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def tone():
    t = np.arange(8000) / 8000  # one second at 8 kHz: the generator resamples to 16 kHz
    return Waveform((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)


def cfg(**kw):
    return SmoothConfig(noise_space="waveform", **kw)


def test_detected_as_audio_backend(qwen_audio_path):
    assert detect_backend(qwen_audio_path) == "hf-audio"


def test_sigma_zero_gives_every_candidate_the_clean_answer(generator, tone):
    out = generator.generate(tone, PROMPT, plan_round(cfg(sigma=0.0, num_samples=4), 0), max_new_tokens=5)
    assert len(out) == 5 and len({g.text for g in out}) == 1


def test_noise_goes_on_the_resampled_waveform_before_features(generator, tone):
    specs = plan_round(cfg(sigma=0.05, num_samples=2), 0)
    waves = generator.noisy_waveforms(tone, specs)
    clean = resample(tone, 16000).samples
    assert len(clean) == 16000
    np.testing.assert_array_equal(waves[0], clean)
    np.testing.assert_allclose(waves[1] - clean, gaussian(clean.shape, specs[1]).numpy(), atol=1e-6)
    batch = generator.prepare(tone, PROMPT, specs)
    assert all(torch.equal(row, batch["input_ids"][0]) for row in batch["input_ids"])
    alone = generator.processor.feature_extractor(clean, sampling_rate=16000, return_tensors="pt")
    torch.testing.assert_close(batch["input_features"][0], alone["input_features"][0], rtol=0, atol=1e-5)
    assert not torch.allclose(batch["input_features"][1], batch["input_features"][0])


@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_batched_round_matches_one_at_a_time(generator, tone, sigma):
    specs = plan_round(cfg(sigma=sigma, num_samples=3), 0)
    batched = [g.text for g in generator.generate(tone, PROMPT, specs, max_new_tokens=5)]
    single = [generator.generate(tone, PROMPT, [s], max_new_tokens=5)[0].text for s in specs]
    assert batched == single


def test_answer_batch_gives_each_clip_and_prompt_its_clean_answer(generator, tone):
    short = Waveform(tone.samples[:4000], 8000)  # clips of different lengths share a batch
    pairs = [(tone, PROMPT), (short, "Is there speech in the audio?")]
    batched = [g.text for g in generator.answer_batch([c for c, _ in pairs], [p for _, p in pairs], max_new_tokens=5)]
    clean = plan_round(cfg(sigma=0.0, num_samples=1), 0)[:1]
    assert batched == [generator.generate(c, p, clean, max_new_tokens=5)[0].text for c, p in pairs]
