import json

import numpy as np
import pytest

from shared.tools.cli import main

PROVENANCE = {
    "index",
    "round",
    "seed",
    "sigma",
    "noise_space",
    "is_clean",
    "text",
    "num_tokens",
    "generation_ms",
    "cluster",
    "cosine_to_centroid",
    "selected",
}


@pytest.fixture()
def image_file(tmp_path, shapes_image):
    path = tmp_path / "input.png"
    shapes_image.save(path)
    return path


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_defend_json_carries_the_full_provenance(capsys, image_file, llava_path):
    out = run_json(
        capsys,
        "defend",
        str(image_file),
        "--prompt",
        "Is there a circle?",
        "--model",
        llava_path,
        "--sigma",
        "0.2",
        "-n",
        "6",
        "--seed",
        "9",
        "--max-new-tokens",
        "4",
        "--json",
    )
    assert {"answer", "abstained", "consensus", "clusters", "samples"} <= out.keys()
    assert {"share", "lower_bound"} <= out["consensus"].keys()
    assert len(out["samples"]) == 7 and all(s.keys() >= PROVENANCE for s in out["samples"])
    assert sum(s["selected"] for s in out["samples"]) == 1
    assert out["samples"][0]["is_clean"] and out["samples"][1]["sigma"] == 0.2
    assert out["config"]["seed"] == 9 and out["embedder"].startswith("sentence-transformers:")
    assert sum(c["size"] for c in out["clusters"]) == 7


def test_same_seed_same_samples(capsys, image_file, llava_path):
    argv = [
        "defend",
        str(image_file),
        "--prompt",
        "Is there a circle?",
        "--model",
        llava_path,
        "-n",
        "4",
        "--sigma",
        "0.5",
        "--max-new-tokens",
        "4",
        "--json",
    ]
    a, b = run_json(capsys, *argv), run_json(capsys, *argv)
    strip = [{k: v for k, v in s.items() if k != "generation_ms"} for s in a["samples"]]
    assert strip == [{k: v for k, v in s.items() if k != "generation_ms"} for s in b["samples"]]


def test_human_output_names_answer_clusters_and_bound(capsys, image_file, llava_path):
    assert (
        main(
            [
                "defend",
                str(image_file),
                "--prompt",
                "Is there a circle?",
                "--model",
                llava_path,
                "--answers",
                "yes-no",
                "-n",
                "4",
                "--max-new-tokens",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("answer: ") and "abstained: " in out and "lower bound" in out
    assert "clusters:" in out and "certified radius" in out


def test_bad_inputs_fail_with_a_clear_message(capsys, tmp_path, llava_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not media at all")
    assert main(["defend", str(junk), "--prompt", "x", "--model", llava_path]) == 2
    assert "neither an image nor an audio" in capsys.readouterr().err
    wav = tmp_path / "tone.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000)
    assert main(["defend", str(wav), "--prompt", "x", "--model", llava_path]) == 2
    assert "takes image" in capsys.readouterr().err
    assert main(["defend", str(tmp_path / "missing.png"), "--prompt", "x"]) == 2
    assert main(["defend", str(junk), "--prompt", "x", "--sigma", "-1", "--model", llava_path]) == 2


def test_synth_writes_pope_format(tmp_path, capsys):
    assert main(["synth", "--seed", "4", "--count", "5", "--out", str(tmp_path)]) == 0
    lines = [json.loads(x) for x in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert len(lines) == 10 and all(set(q) == {"question_id", "image", "text", "label"} for q in lines)
    assert all((tmp_path / q["image"]).is_file() for q in lines)


def test_synth_audio_writes_wav_clips_and_questions(tmp_path, capsys):
    import soundfile as sf

    assert main(["synth", "--modality", "audio", "--seed", "4", "--count", "3", "--out", str(tmp_path)]) == 0
    assert "wrote 3 clips and 9 questions" in capsys.readouterr().out
    lines = [json.loads(x) for x in (tmp_path / "questions.jsonl").read_text().splitlines()]
    assert len(lines) == 9 and all(set(q) == {"question_id", "audio", "text", "label", "category"} for q in lines)
    for q in lines:
        info = sf.info(tmp_path / q["audio"])
        assert (info.samplerate, info.channels) == (16000, 1) and 1.0 <= info.duration <= 3.0


def test_unknown_model_is_a_clear_error(capsys, image_file, tmp_path):
    assert main(["defend", str(image_file), "--prompt", "x", "--model", str(tmp_path / "no-such-model")]) == 2
    assert "smoothguard: error:" in capsys.readouterr().err


def test_each_broker_gets_its_own_beat_schedule_file(monkeypatch):
    """Two stacks on one machine (two brokers) never share the sweeper's schedule file."""
    import argparse

    from shared.config import get_settings
    from shared.tools.commands import beat_schedule_path, celery_arguments

    a, b = beat_schedule_path("redis://127.0.0.1:6379/0"), beat_schedule_path("redis://127.0.0.1:6380/0")
    assert a != b and beat_schedule_path("redis://127.0.0.1:6379/0") == a
    monkeypatch.setenv("SMOOTHGUARD_REDIS_URL", "redis://127.0.0.1:6380/0")
    get_settings.cache_clear()
    try:
        argv = celery_arguments(argparse.Namespace(queues=["cpu"], beat=True, concurrency=1))
    finally:
        get_settings.cache_clear()
    assert argv[argv.index("-s") + 1] == b
