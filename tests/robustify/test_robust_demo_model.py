"""The committed noise-robust demo model (``scripts/make_robust_demo_model.py``): small, trained
on other seeds than the held-out ones, loads through the ``hf`` backend, answers the demo image,
keeps its clean accuracy, and keeps the original's language model bit-for-bit."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import shared
from shared.backends.registry import load_generator
from shared.benchmarks.evaluate import accuracy
from shared.benchmarks.shapes import read_questions, write_set
from shared.config import Settings

ASSETS = Path(shared.__file__).parent / "assets"
ROBUST = ASSETS / "demo-llava-robust"
HELD_OUT_SEED = 20261126  # as tests/benchmarks/test_demo_model.py: neither training nor validation saw it
SETTINGS = Settings(device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def robust():
    return load_generator(str(ROBUST), settings=SETTINGS)


def test_checkpoint_is_small_and_trained_on_other_seeds():
    assert sum(p.stat().st_size for p in ROBUST.iterdir()) < 20 * 2**20
    info = json.loads((ROBUST / "training_info.json").read_text())
    assert HELD_OUT_SEED not in (info["train_seed"], info["val_seed"], info["evaluation"]["seed"])
    assert info["record"]["noise_space"] == "pixel" and info["record"]["steps"] > 0
    assert info["command"].startswith("scripts/make_robust_demo_model.py")


def test_answers_the_demo_image(robust):
    [answer] = robust.answer_batch([Image.open(ASSETS / "demo.png")], ["What colour is the circle?"], max_new_tokens=4)
    assert answer.text.strip().lower().split()[0] == "red"


def test_clean_accuracy_on_200_held_out_questions(robust, tmp_path):
    write_set(HELD_OUT_SEED, 100, tmp_path)  # 100 images, 200 questions
    questions = read_questions(tmp_path / "questions.jsonl")
    result = accuracy(robust, questions, tmp_path)
    print(f"robust demo model held-out accuracy: {result.value:.4f} ({result.correct}/{result.total})")
    assert result.total == 200 and result.value >= 0.95


def test_language_model_is_the_original_bit_for_bit(robust):
    original = load_generator(str(ASSETS / "demo-llava"), settings=SETTINGS).model.state_dict()  # type: ignore[attr-defined]
    state = robust.model.state_dict()
    lm = [k for k in state if "vision_tower" not in k and "multi_modal_projector" not in k]
    assert lm and all(torch.equal(state[k], original[k]) for k in lm)
    assert not all(torch.equal(state[k], original[k]) for k in state)
