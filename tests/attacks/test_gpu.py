"""On a CUDA device: the attacks keep every tensor on the GPU (seeded generators, in-graph
preprocessing, log-mel), in float32 and bf16, and still flip the demo model's answers.
Skipped without CUDA (see tests/conftest.py)."""

import numpy as np
import pytest
import torch

from shared.attacks import AttackConfig, attack_audio, attack_images
from shared.attacks.audio import LogMel
from shared.backends.hf_vision import HFVisionGenerator
from shared.config import DEMO_MODEL
from shared.media.decode import Waveform
from tests.attacks.conftest import answers, png_round_trip, wrong_answer

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def demo_cuda(request):
    return HFVisionGenerator(str(DEMO_MODEL), device="cuda", dtype=request.param)


@pytest.mark.parametrize("method", ["pgd", "eot"])
def test_targeted_attack_on_cuda_flips_answers(demo_cuda, held_out, method):
    questions, images = held_out
    prompts = [q.text for q in questions]
    correct = [i for i, a in enumerate(answers(demo_cuda, images, prompts)) if a == questions[i].label]
    targets = [wrong_answer(q) for q in questions]
    config = AttackConfig(method=method, steps=20)
    result = attack_images(demo_cuda, images, prompts, targets, config)
    assert len(result.images) == len(questions) and max(result.linf) <= 16 / 255 + 1e-6
    adversarial = answers(demo_cuda, [png_round_trip(im) for im in result.images], prompts)
    flipped = sum(adversarial[i] != questions[i].label for i in correct)
    print(f"{demo_cuda.model.dtype} {method}: flipped {flipped}/{len(correct)} in {result.ms:.0f} ms")
    assert flipped >= 0.5 * len(correct)


def test_audio_attack_on_cuda(qwen_audio_path):
    from shared.backends.hf_audio import HFAudioGenerator

    generator = HFAudioGenerator(qwen_audio_path, device="cuda", dtype="float32")
    rate = generator.sample_rate
    wave = (0.2 * np.random.default_rng(1).standard_normal(rate)).astype(np.float32)
    out = generator.processor(text=[generator.chat_text("hi")], audio=[wave], sampling_rate=rate, return_tensors="pt")
    features = LogMel(generator.processor.feature_extractor)(torch.from_numpy(wave).cuda()[None])
    torch.testing.assert_close(features.cpu(), out["input_features"], rtol=0, atol=1e-4)
    config = AttackConfig(method="eot", eps=0.01, steps=3, eot_samples=4, sigma=0.01, noise_space="waveform")
    result = attack_audio(generator, Waveform(wave, rate), ["What is it?", "Is it speech?"], ["yes", "no"], config)
    assert len(result.waves) == 2 and max(result.linf) <= 0.01 + 1e-6
