"""Compiled static-cache generation (``shared.backends.compiled``): batches padded to bucket sizes
in every input layout, and the demo model's compiled rounds equal to eager ones, with no compile
after the worker's warm-up."""

import numpy as np
import pytest
import torch

from shared.backends import compiled
from shared.backends.hf_audio import HFAudioGenerator
from shared.backends.hf_common import generate_batch
from shared.backends.hf_vision import HFVisionGenerator
from shared.backends.registry import LocalRuntime, load_generator
from shared.config import DEMO_IMAGE, DEMO_MODEL, Settings
from shared.media.decode import Waveform, load_image
from shared.smoothing.noise import plan_round
from shared.smoothing.types import SmoothConfig

PROMPT = "What colour is the circle?"


def test_buckets_from_settings():
    assert compiled.parse_buckets("16, 8,,32,8") == (8, 16, 32)
    assert compiled.compile_buckets(True, "8,16,32,64,128", 32) == (8, 16, 32)
    assert compiled.compile_buckets(True, "8,16,64", 40) == (8, 16, 40)
    assert compiled.compile_buckets(False, "8,16", 32) == ()
    assert [compiled.bucket_for(n, (8, 16, 32)) for n in (1, 8, 9, 32, 33)] == [8, 8, 16, 32, 33]


def test_padding_repeats_the_last_example():
    batch = {"input_ids": torch.arange(6).view(2, 3), "pixel_values": torch.randn(2, 3, 4, 4)}
    padded = compiled.pad_batch(batch, 5)
    assert padded["input_ids"].tolist() == [[0, 1, 2], [3, 4, 5], [3, 4, 5], [3, 4, 5], [3, 4, 5]]
    assert padded["pixel_values"].shape == (5, 3, 4, 4) and torch.equal(
        padded["pixel_values"][4], batch["pixel_values"][1]
    )
    assert compiled.pad_batch(batch, 2) is batch


def test_padding_keeps_qwen_patches_with_their_grid():
    grid = torch.tensor([[1, 2, 2], [1, 2, 3]])  # 4 and 6 patch rows
    batch = {
        "input_ids": torch.zeros(2, 5, dtype=torch.long),
        "image_grid_thw": grid,
        "pixel_values": torch.randn(10, 7),
    }
    padded = compiled.pad_batch(batch, 4)
    assert padded["image_grid_thw"].tolist() == [[1, 2, 2], [1, 2, 3], [1, 2, 3], [1, 2, 3]]
    assert padded["pixel_values"].shape == (22, 7) and torch.equal(
        padded["pixel_values"][-6:], batch["pixel_values"][4:]
    )


def test_a_layout_it_does_not_know_is_left_unpadded():
    two_images_each = {
        "input_ids": torch.zeros(2, 5),
        "image_grid_thw": torch.ones(4, 3),
        "pixel_values": torch.ones(4, 7),
    }
    assert compiled.pad_batch(two_images_each, 8) is two_images_each
    scalar = {"input_ids": torch.zeros(2, 5), "scale": torch.tensor(1.0)}
    assert compiled.pad_batch(scalar, 8) is scalar


@pytest.mark.parametrize("checkpoint", ["llava_path", "llava_next_path", "qwen_vl_path", "qwen_audio_path"])
def test_padded_generation_gives_the_real_rows_the_same_outputs(request, checkpoint, shapes_image):
    """LLaVA ``[B, C, H, W]``, LLaVA-NeXT ``[B, crops, …]`` + ``image_sizes``, Qwen-VL's
    concatenated patches + ``image_grid_thw``, Qwen2-Audio's ``input_features``: 3 rows padded to 8."""
    path = request.getfixturevalue(checkpoint)
    audio = checkpoint == "qwen_audio_path"
    gen = (HFAudioGenerator if audio else HFVisionGenerator)(path, device="cpu", dtype="float32")
    media = Waveform(np.sin(np.arange(16000) / 9).astype(np.float32), 16000) if audio else shapes_image
    specs = plan_round(SmoothConfig(sigma=0.3, num_samples=2, noise_space=gen.noise_spaces[0]), 0)
    batch = gen.prepare(media, PROMPT, specs)
    assert compiled.pad_batch(batch, 8)["input_ids"].shape[0] == 8  # every tensor's layout known
    eager = generate_batch(gen.model, gen.processor, batch, gen.device, max_new_tokens=5)
    setattr(gen.model, compiled.BUCKETS_ATTR, (8,))
    padded = generate_batch(gen.model, gen.processor, batch, gen.device, max_new_tokens=5)
    assert len(padded) == 3 and [g.text for g in padded] == [g.text for g in eager]
    assert [g.num_tokens for g in padded] == [g.num_tokens for g in eager]


@pytest.mark.slow
def test_compiled_demo_rounds_equal_eager_and_reuse_the_warm_up_compile():
    """A GPU worker's start (``warm_up``: bucket 16 compiled), then rounds of 11 candidates at σ=0 and
    σ=0.5: the eager texts, and not one more compile."""
    settings = Settings(
        model=str(DEMO_MODEL),
        device="cpu",
        dtype="float32",
        compile_generator=True,
        batch_buckets="16",
        max_batch_size=16,
    )
    assert compiled.warm_up(settings) == (16,)
    fast = load_generator(settings=settings)
    eager = load_generator(str(DEMO_MODEL), settings=LocalRuntime(device="cpu", dtype="float32", max_batch_size=16))
    assert fast.model.generation_config.cache_implementation == "static" and hasattr(fast.model, "_compiled_call")
    image = load_image(DEMO_IMAGE.read_bytes())
    for sigma in (0.0, 0.5):
        specs = plan_round(SmoothConfig(sigma=sigma, num_samples=10, seed=7), 0)
        with torch._dynamo.config.patch(error_on_recompile=True):
            got = [g.text for g in fast.generate(image, PROMPT, specs, max_new_tokens=8)]
        assert got == [g.text for g in eager.generate(image, PROMPT, specs, max_new_tokens=8)]
        assert len(got) == 11 and got[0] == "red"
