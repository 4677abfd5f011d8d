"""The attacks' in-graph preprocessing reproduces the processors' own outputs exactly."""

import numpy as np
import pytest
import torch

from shared.attacks.audio import LogMel
from shared.attacks.pixels import PixelMap, to_image


@pytest.fixture(params=["tiny_llava", "tiny_qwen_vl"])
def generator(request):
    return request.getfixturevalue(request.param)


def processor_pixels(generator, image):
    out = generator.processor(images=[image], text=[generator.chat_text("Is there a circle?")], return_tensors="pt")
    return out["pixel_values"], out.get("image_grid_thw")


@pytest.mark.parametrize("which", ["scene", "odd"])
def test_to_pixel_values_of_from_image_is_the_processors_pixel_values(generator, scenes, odd_image, which):
    image = scenes[0] if which == "scene" else odd_image
    pm = PixelMap.for_generator(generator)
    x = pm.from_image(image)
    assert x.dim() == 4 and x.shape[:2] == (1, 3) and x.min() >= 0 and x.max() <= 1
    assert torch.equal((x * 255).round(), x * 255) or torch.allclose((x * 255).round(), x * 255, atol=1e-4)
    expected, grid = processor_pixels(generator, image)
    torch.testing.assert_close(pm.to_pixel_values(x), expected, rtol=0, atol=1e-5)
    if grid is not None:  # Qwen: the patch grid is the image's size in patches
        assert grid.tolist() == [[1, x.shape[2] // pm.patch, x.shape[3] // pm.patch]]


def test_batched_pixel_values_concatenate_like_the_processor(generator, scenes):
    pm = PixelMap.for_generator(generator)
    x = torch.cat([pm.from_image(im) for im in scenes])
    out = generator.processor(images=scenes, text=[generator.chat_text("hi")] * 3, return_tensors="pt", padding=True)
    torch.testing.assert_close(pm.to_pixel_values(x), out["pixel_values"], rtol=0, atol=1e-5)


def test_gradient_flows_to_every_pixel(generator, scenes):
    pm = PixelMap.for_generator(generator)
    x = pm.from_image(scenes[0]).requires_grad_(True)
    pm.to_pixel_values(x).sum().backward()
    assert x.grad is not None and bool((x.grad != 0).all())


def test_an_8bit_image_of_x_reprocesses_to_the_same_pixel_values(generator, odd_image):
    pm = PixelMap.for_generator(generator)
    x = pm.from_image(odd_image)
    image = to_image(x)
    assert image.size == (x.shape[3], x.shape[2])
    expected, _ = processor_pixels(generator, image)
    torch.testing.assert_close(pm.to_pixel_values(x), expected, rtol=0, atol=1e-5)


def test_unknown_layout_is_refused_naming_the_model_type(llava_next_path, scenes):
    from shared.backends.hf_vision import HFVisionGenerator

    generator = HFVisionGenerator(llava_next_path, device="cpu", dtype="float32")
    with pytest.raises(ValueError, match="llava_next"):
        PixelMap.for_generator(generator).from_image(scenes[0])


@pytest.mark.parametrize("seconds", [0.3, 1.0, 1.7])
def test_log_mel_features_are_the_feature_extractors(tiny_audio, seconds):
    rate = tiny_audio.sample_rate
    wave = (0.2 * np.random.default_rng(1).standard_normal(int(seconds * rate))).astype(np.float32)
    wave[: rate // 10] *= 0.01  # quiet and loud parts, so the max − 8 floor applies somewhere
    out = tiny_audio.processor(
        text=[tiny_audio.chat_text("What is it?")], audio=[wave], sampling_rate=rate, return_tensors="pt"
    )
    got = LogMel(tiny_audio.processor.feature_extractor)(torch.from_numpy(wave)[None])
    torch.testing.assert_close(got, out["input_features"], rtol=0, atol=1e-5)


def test_a_size_the_processor_would_resize_again_is_refused(tiny_qwen_vl):
    # 50×83 smart-resizes to 28×56, which (under the tiny checkpoint's min_pixels) resizes to 56×84
    from PIL import Image

    image = Image.new("RGB", (83, 50), (120, 30, 200))
    with pytest.raises(ValueError, match="survive re-processing"):
        PixelMap.for_generator(tiny_qwen_vl).from_image(image)
