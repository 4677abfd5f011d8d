"""The bundled demo model: a real trained checkpoint, loaded through the same ``hf`` backend as a
hub model, must answer held-out synthetic questions (a seed training never saw) correctly."""

import json
from pathlib import Path

import pytest

from shared.backends.registry import load_generator
from shared.benchmarks.evaluate import accuracy
from shared.benchmarks.shapes import read_questions, write_set
from shared.config import DEMO_MODEL, Settings
from shared.tools.cli import main

HELD_OUT_SEED = 20261126  # training used 1000 (train) and 999 (validation)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("held-out")
    write_set(HELD_OUT_SEED, 500, out)  # 500 images, 1,000 questions
    return out


def test_checkpoint_is_small_and_trained_on_other_seeds():
    size = sum(p.stat().st_size for p in DEMO_MODEL.iterdir())
    assert size < 20 * 2**20
    info = json.loads((DEMO_MODEL / "training_info.json").read_text())
    assert HELD_OUT_SEED not in (info["train_seed"], info["val_seed"])


def test_demo_model_accuracy_on_1000_held_out_questions(held_out):
    generator = load_generator(settings=Settings(device="cpu", dtype="float32"))
    assert Path(generator.name) == DEMO_MODEL
    questions = read_questions(held_out / "questions.jsonl")
    assert len(questions) == 1000
    result = accuracy(generator, questions, held_out)
    print(f"demo model held-out accuracy: {result.value:.4f} ({result.correct}/{result.total})")
    assert result.value >= 0.95


def test_defend_gives_the_right_answer_on_a_synth_image(held_out, capsys):
    questions = read_questions(held_out / "questions.jsonl")[:6]
    for q in questions:
        assert main(["defend", str(held_out / q.image), "--prompt", q.text, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["answer"].strip().lower() == q.label, (q, out["answer"])
        assert len(out["samples"]) == 11
