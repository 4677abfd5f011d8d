"""The bundled audio demo model: a real trained Qwen2-Audio-architecture checkpoint, loaded through
the same ``hf-audio`` backend as a hub model, must answer held-out synthetic tones questions (a
seed training never saw) correctly — batched through the generator, as the service runs it."""

import json

import pytest

from shared.backends.registry import detect_backend, load_generator
from shared.benchmarks.demo_audio_model import audio_accuracy
from shared.benchmarks.tones import read_set, write_set
from shared.config import DEMO_AUDIO_MODEL, Settings
from shared.tools.cli import main

HELD_OUT_SEED = 20261203  # training used 3000 (train) and 2999 (validation)


@pytest.fixture(scope="module")
def generator():
    return load_generator(str(DEMO_AUDIO_MODEL), "hf-audio", settings=Settings(device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("held-out-tones")
    write_set(out, HELD_OUT_SEED, 334)  # 334 clips, three questions each
    return out


def test_checkpoint_is_small_and_trained_on_other_seeds():
    size = sum(p.stat().st_size for p in DEMO_AUDIO_MODEL.iterdir())
    assert size < 10 * 2**20
    info = json.loads((DEMO_AUDIO_MODEL / "training_info.json").read_text())
    assert HELD_OUT_SEED not in (info["train_seed"], info["val_seed"])
    assert detect_backend(str(DEMO_AUDIO_MODEL)) == "hf-audio"


def test_loads_through_load_generator_and_answers_a_clip(generator, tmp_path):
    write_set(tmp_path, HELD_OUT_SEED, 1)
    items = read_set(tmp_path)
    assert generator.modality == "audio" and generator.sample_rate == 16000
    result = audio_accuracy(generator, items)
    assert (result.correct, result.total) == (3, 3), [(i.text, i.label) for i in items]


@pytest.mark.slow
def test_accuracy_on_1000_held_out_questions(generator, held_out):
    items = read_set(held_out)[:1000]
    assert len(items) == 1000
    result = audio_accuracy(generator, items)
    print(f"audio demo model held-out accuracy: {result.value:.4f} ({result.correct}/{result.total})")
    assert result.value >= 0.95


def test_defend_answers_a_held_out_clip(held_out, capsys):
    item = read_set(held_out)[0]
    wav = str(held_out / item.audio)
    argv = ["defend", wav, "--model", str(DEMO_AUDIO_MODEL), "--backend", "hf-audio", "--prompt", item.text]
    assert main([*argv, "--local", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"].strip().lower() == item.label, (item, out["answer"])
    assert len(out["samples"]) == 11
