"""``smoothguard robustify``: a local checkpoint in, a robust one out that the ``hf`` backend loads,
with its training record; bad sources refused with a message, nothing written."""

import json

from shared.backends.registry import load_generator
from shared.benchmarks.demo_model import build_model
from shared.benchmarks.shapes import generate_set, render
from shared.config import Settings
from shared.tools.cli import main


def tiny_checkpoint(path):
    model, processor = build_model(seed=0, vision_hidden=32, text_hidden=32, layers=1)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_robustify_writes_a_checkpoint_that_loads_with_its_record(tmp_path):
    source, out = tiny_checkpoint(tmp_path / "src"), tmp_path / "robust"
    images = tmp_path / "images"
    images.mkdir()
    for i, (scene, _) in enumerate(generate_set(5, 6)):
        render(scene).save(images / f"{i}.png")
    argv = ["robustify", str(source), "--out", str(out), "--images", str(images), "--steps", "2", "--batch", "4"]
    assert main(argv) == 0
    info = json.loads((out / "training_info.json").read_text())
    assert info["source"] == str(source) and info["record"]["steps"] == 2
    generator = load_generator(str(out), settings=Settings(device="cpu", dtype="float32"))
    assert (
        len(
            generator.answer_batch([render(generate_set(6, 1)[0][0])], ["What colour is the circle?"], max_new_tokens=2)
        )
        == 1
    )


def test_robustify_refuses_a_source_that_is_not_a_checkpoint_folder(tmp_path, capsys):
    out = tmp_path / "robust"
    assert main(["robustify", str(tmp_path), "--out", str(out), "--shapes", "4", "--steps", "1"]) == 2
    assert "not a local checkpoint folder" in capsys.readouterr().err and not out.exists()
