"""On a CUDA device: the demo model in bf16 keeps its answers, and a batched round still equals
one-at-a-time generation. Skipped without CUDA (see conftest)."""

import pytest

from shared.backends.hf_vision import HFVisionGenerator
from shared.config import DEMO_IMAGE, DEMO_MODEL
from shared.media.decode import load_image
from shared.smoothing import SmoothConfig, plan_round

pytestmark = pytest.mark.gpu


def test_demo_model_on_cuda_bf16():
    gen = HFVisionGenerator(str(DEMO_MODEL), device="cuda", dtype="bfloat16")
    assert gen.model.device.type == "cuda"
    image = load_image(DEMO_IMAGE.read_bytes())
    specs = plan_round(SmoothConfig(sigma=0.1, num_samples=10), 0)
    batched = [g.text for g in gen.generate(image, "What colour is the circle?", specs, max_new_tokens=4)]
    single = [gen.generate(image, "What colour is the circle?", [s], max_new_tokens=4)[0].text for s in specs]
    assert batched == single and batched[0] == "red"
