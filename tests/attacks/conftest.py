import io
import random

import numpy as np
import pytest
from PIL import Image

from shared.benchmarks.shapes import COLOURS, random_scene, render, write_set

HELD_OUT_SEED = 4242  # the demo model trained on seeds 1000 (train) and 999 (validation)

PROMPTS = ["Is there a circle in the image?", "What colour is the square?", "Is there a cross in the image?"]
TARGETS = ["yes", "red", "no"]


@pytest.fixture(scope="session")
def tiny_llava(llava_path):
    from shared.backends.hf_vision import HFVisionGenerator

    return HFVisionGenerator(llava_path, device="cpu", dtype="float32", max_batch_size=32)


@pytest.fixture(scope="session")
def tiny_qwen_vl(qwen_vl_path):
    from shared.backends.hf_vision import HFVisionGenerator

    return HFVisionGenerator(qwen_vl_path, device="cpu", dtype="float32", max_batch_size=32)


@pytest.fixture(scope="session")
def tiny_audio(qwen_audio_path):
    from shared.backends.hf_audio import HFAudioGenerator

    return HFAudioGenerator(qwen_audio_path, device="cpu", dtype="float32", max_batch_size=32)


@pytest.fixture(scope="session")
def scenes():
    """Three synthetic shapes images (64×64), as the demo set makes them."""
    rng = random.Random(11)
    return [render(random_scene(rng)) for _ in range(3)]


@pytest.fixture(scope="session")
def odd_image():
    """A non-square random image, so resize / crop / smart-resize all do something."""
    return Image.fromarray((np.random.default_rng(5).random((50, 70, 3)) * 255).astype(np.uint8))


@pytest.fixture(scope="session")
def held_out(tmp_path_factory):
    """16 held-out demo-set questions (8 images) and their images."""
    out = tmp_path_factory.mktemp("attack-held-out")
    questions = write_set(HELD_OUT_SEED, 8, out)
    return questions, [Image.open(out / q.image).convert("RGB") for q in questions]


def wrong_answer(question) -> str:
    """yes↔no, or another colour (chosen by question id, so the set of targets is fixed)."""
    if question.label in ("yes", "no"):
        return "no" if question.label == "yes" else "yes"
    others = [c for c in COLOURS if c != question.label]
    return others[question.question_id % len(others)]


def png_round_trip(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def answers(generator, images, prompts):
    return [g.text.strip().lower() for g in generator.answer_batch(images, prompts, max_new_tokens=8)]
