"""The ``hf`` generator on tiny random LLaVA and Qwen2.5-VL checkpoints loaded from disk."""

import numpy as np
import pytest
import torch

from shared.backends.hf_vision import HFVisionGenerator
from shared.smoothing.noise import gaussian, plan_round
from shared.smoothing.types import SmoothConfig

PROMPT = "Is there a circle in the image?"


@pytest.fixture(scope="module", params=["llava", "llava_next", "qwen_vl"])
def generator(request):
    path = request.getfixturevalue(f"{request.param}_path")
    return HFVisionGenerator(path, device="cpu", dtype="float32", max_batch_size=32)


def texts(gens):
    return [g.text for g in gens]


def test_sigma_zero_gives_every_candidate_the_clean_answer(generator, shapes_image):
    specs = plan_round(SmoothConfig(sigma=0.0, num_samples=5), 0)
    out = generator.generate(shapes_image, PROMPT, specs, max_new_tokens=6)
    assert len(out) == 6 and len(set(texts(out))) == 1
    assert all(g.num_tokens >= 1 for g in out)


def test_normalized_noise_lands_on_pixel_values_only(generator, shapes_image):
    specs = plan_round(SmoothConfig(sigma=0.3, num_samples=3), 0)
    batch = generator.prepare(shapes_image, PROMPT, specs)
    clean = generator.processor(images=[shapes_image], text=[generator.chat_text(PROMPT)], return_tensors="pt")
    block = clean["pixel_values"]
    # LLaVA [1, C, H, W]; LLaVA-NeXT [1, crops, C, H, W]; Qwen [patches, C*T*P*P]
    assert block.dim() == {"LlavaForConditionalGeneration": 4, "LlavaNextForConditionalGeneration": 5}.get(
        type(generator.model).__name__, 2
    )
    blocks = batch["pixel_values"].split(block.shape[0])
    assert len(blocks) == 4 and batch["pixel_values"].shape[1:] == block.shape[1:]
    for spec, got in zip(specs, blocks, strict=True):
        torch.testing.assert_close(got - block, gaussian(block.shape, spec), rtol=0, atol=1e-6)
    assert torch.equal(blocks[0], block) and not torch.equal(blocks[1], blocks[2])
    for key, value in batch.items():
        if key != "pixel_values":
            assert all(torch.equal(row, clean[key][0]) for row in value), key


def test_pixel_noise_is_added_in_unit_range_before_the_processor(generator, shapes_image):
    specs = plan_round(SmoothConfig(sigma=0.2, num_samples=2, noise_space="pixel"), 0)
    batch = generator.prepare(shapes_image, PROMPT, specs)
    clean = generator.processor(images=[shapes_image], text=[generator.chat_text(PROMPT)], return_tensors="pt")
    n = clean["pixel_values"].shape[0]
    blocks = batch["pixel_values"].split(n)
    torch.testing.assert_close(blocks[0], clean["pixel_values"], rtol=0, atol=1e-5)
    image_processor = generator.processor.image_processor
    expected = image_processor(images=[_noisy_unit(shapes_image, specs[1])], do_rescale=False, return_tensors="pt")[
        "pixel_values"
    ]
    torch.testing.assert_close(blocks[1], expected, rtol=0, atol=1e-5)
    assert (blocks[1] - blocks[0]).abs().max() > 0.1


def _noisy_unit(image, spec):
    base = np.asarray(image, dtype=np.float32) / 255.0
    return np.clip(base + gaussian(base.shape, spec).numpy(), 0, 1)


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_batched_round_matches_one_at_a_time(generator, shapes_image, sigma):
    specs = plan_round(SmoothConfig(sigma=sigma, num_samples=4), 0)
    batched = generator.generate(shapes_image, PROMPT, specs, max_new_tokens=6)
    single = [generator.generate(shapes_image, PROMPT, [s], max_new_tokens=6)[0] for s in specs]
    assert texts(batched) == texts(single)


def test_one_generate_call_per_round_chunked_only_by_max_batch(generator, shapes_image, monkeypatch):
    calls = []
    real = generator.model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    specs = plan_round(SmoothConfig(sigma=0.2, num_samples=10), 0)
    monkeypatch.setattr(generator.model, "generate", spy)
    whole = generator.generate(shapes_image, PROMPT, specs, max_new_tokens=4)
    assert calls == [11]
    monkeypatch.setattr(generator, "max_batch_size", 4)
    chunked = generator.generate(shapes_image, PROMPT, specs, max_new_tokens=4)
    assert calls == [11, 4, 4, 3] and texts(chunked) == texts(whole)


def test_answer_batch_answers_different_prompts_in_one_call(generator, shapes_image):
    prompts = [PROMPT, "What colour is the square?", "Is there a red cross in the image?"]
    batched = generator.answer_batch([shapes_image] * 3, prompts, max_new_tokens=5)
    single = [generator.answer_batch([shapes_image], [p], max_new_tokens=5)[0] for p in prompts]
    assert texts(batched) == texts(single)
