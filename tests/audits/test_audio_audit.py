"""Audio audits: the spec's audio defaults and refusals, the audio benchmark loader and archive
check, the report's playable clips — and, on the real stack over REST, a small tone audit end to
end (L∞ and L2 waveform PGD, certified) and one whose GPU worker is killed mid-chunk.

The model is the tiny random Qwen2-Audio checkpoint of ``tests.checkpoints``: an audit runs
whatever its accuracy."""

import base64
import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pydantic import ValidationError

from shared.attacks.config import AttackConfig
from shared.attacks.threat import project
from shared.audits.datasets import check_files
from shared.audits.spec import AUDIO_EPS, AuditSpec
from shared.audits.store import set_vocabulary, target_for
from shared.benchmarks.items import DatasetError
from shared.benchmarks.loaders import load_dataset, synthetic_tones
from shared.benchmarks.tones import write_set
from shared.config import Settings
from shared.reports.certification import coverage
from shared.reports.media import audio_clip
from shared.reports.render import render
from shared.reports.summary import summarize
from tests.audits.test_audits import audit_jobs, items, kill_the_gpu_worker_in_chunk_1, wait_audit, wait_dataset
from tests.helpers import auth
from tests.reports.rows import make_row

QUEUES = ("gpu", "cpu", "audits", "webhooks")


def tones_spec(model, **over):
    spec = {
        "dataset": {"format": "tones", "seed": 5, "count": 2},  # 2 clips, 6 questions: the first 4
        "limit": 4,
        "model": model,
        "attacks": [{"name": "pgd", "steps": 3}, {"name": "pgd", "label": "pgd-l2", "norm": "l2", "steps": 3}],
        "defense": {"sigmas": [0.05], "num_samples": 2, "max_new_tokens": 3},
        "chunk_size": 2,
        "concurrency": 1,
    }
    return spec | over


@pytest.fixture()
def service_env(service_env, qwen_audio_path):
    """The stack's environment, with the tiny audio model among the known models."""
    return service_env | {"SMOOTHGUARD_KNOWN_MODELS": qwen_audio_path}


# ---- the spec ------------------------------------------------------------------------------------


def test_an_audio_audit_gets_waveform_noise_and_amplitude_eps_by_norm():
    spec = AuditSpec.model_validate(
        {
            "dataset": {"format": "tones", "count": 2},
            "attacks": [{"name": "pgd"}, {"name": "pgd", "label": "l2", "norm": "l2"}, {"name": "eot", "eps": 0.05}],
        }
    )
    assert spec.dataset.modality == "audio" and spec.defense.noise_space == spec.noise_space == "waveform"
    assert [a.eps for a in spec.attacks] == [AUDIO_EPS["linf"], AUDIO_EPS["l2"], 0.05]
    assert spec.dataset.generated_items == 6  # three questions per clip
    assert AuditSpec.model_validate(spec.model_dump(mode="json")) == spec  # stored and read back unchanged
    image = AuditSpec.model_validate({})
    assert image.defense.noise_space == "normalized" and image.attacks[0].eps == 16 / 255


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"attacks": [{"name": "universal"}]}, "no universal attack on audio"),
        ({"attacks": [{"name": "pgd", "eps": 0.2}]}, "attacks[0].eps: an audio L∞ ε is in waveform amplitude"),
        ({"attacks": [{"name": "pgd", "norm": "l2", "eps": 12}]}, "less than or equal to 10"),
        ({"attacks": [{"name": "eot", "sigma": 2.0}]}, "attacks[0].sigma: waveform σ at most 1"),
        ({"defense": {"noise_space": "pixel"}}, "noise_space 'pixel' does not apply to audio"),
        ({"defense": {"sigmas": [0.1, 1.5]}}, "defense.sigmas: waveform σ at most 1"),
    ],
)
def test_audio_specs_out_of_range_are_refused_with_the_reason(over, message):
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AuditSpec.model_validate({"dataset": {"format": "tones"}} | over)


def test_an_image_audit_keeps_its_bounds():
    with pytest.raises(ValidationError, match="noise_space 'waveform' does not apply to image"):
        AuditSpec.model_validate({"defense": {"noise_space": "waveform"}})
    with pytest.raises(ValidationError, match=r"attacks\[0\].eps: at most 1 for images"):
        AuditSpec.model_validate({"attacks": [{"name": "pgd", "norm": "l2", "eps": 2}]})


# ---- the loader, the archive check, the targets ----------------------------------------------------


def test_the_tones_set_loads_as_audio_items(tmp_path):
    ds = synthetic_tones(5, 2, tmp_path / "set")
    assert ds.name == "tones" and len(ds) == 6
    assert [i.category for i in ds.items[:3]] == ["count", "order", "existence"]
    assert {i.kind for i in ds.items} == {"closed", "yes_no"} and all(i.modality == "audio" for i in ds.items)
    first = ds.items[0]
    assert first.image == "" and first.media == first.audio and first.audio.startswith("audio/")
    assert sf.info(io.BytesIO(ds.media_bytes(first))).samplerate == 16000
    again = load_dataset("audio-jsonl", tmp_path / "set")  # the same layout, uploaded
    assert [(i.key, i.audio, i.label) for i in again.items] == [(i.key, i.audio, i.label) for i in ds.items]


def write_jsonl(folder: Path, lines: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


LINE = {"question_id": 1, "audio": "a.wav", "text": "Is there a high tone?", "label": "Yes"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([LINE | {"audio": "../a.wav"}], "audio path '../a.wav' must stay inside"),
        ([LINE | {"audio": "b.wav"}], "audio 'b.wav' not found in ./, audio/"),
        ([{k: v for k, v in LINE.items() if k != "label"}], "missing field 'label'"),
        ([LINE, LINE], "duplicate question_id '1'"),
        ([LINE | {"category": ""}], "field 'category' must be a non-empty string"),
    ],
)
def test_bad_audio_jsonl_lines_are_named(tmp_path, lines, message):
    root = write_jsonl(tmp_path / "set", lines)
    sf.write(root / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    with pytest.raises(DatasetError, match=message.replace(".", r"\.")):
        load_dataset("audio-jsonl", root)


def test_the_archive_check_decodes_every_clip(tmp_path):
    root = write_jsonl(tmp_path / "set", [LINE | {"audio": "audio/a.wav"}, LINE | {"question_id": 2}])
    (root / "audio").mkdir()
    sf.write(root / "audio" / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    ds = load_dataset("audio-jsonl", root)
    assert [(i.audio, i.label, i.kind) for i in ds.items] == [("audio/a.wav", "yes", "yes_no")] * 2
    check_files(ds, Settings())  # one clip, decoded once
    (root / "audio" / "a.wav").write_bytes(b"RIFF not really a wave")
    with pytest.raises(DatasetError, match="audio audio/a.wav: the file is neither an image nor audio"):
        check_files(ds, Settings())
    sf.write(root / "audio" / "a.wav", np.zeros(16000 * 3, dtype=np.float32), 16000)
    with pytest.raises(DatasetError, match="lasts 3.0 s; the limit is 2"):
        check_files(ds, Settings(max_audio_seconds=2))


def test_tone_questions_are_targeted_at_another_answer_of_their_kind():
    counts, pitches = set_vocabulary("tones", "count"), set_vocabulary("tones", "order")
    assert counts == ["four", "one", "three", "two"] and pitches == ["high", "low"]
    assert target_for("closed", "two", 0, counts) in {"four", "one", "three"}
    assert target_for("closed", "high", 5, pitches) == "low" and target_for("yes_no", "no", 0, []) == "yes"
    assert set_vocabulary("audio-jsonl", "count") is None  # an upload: the labels its closed items have


# ---- the L2 projection in waveform units -------------------------------------------------------------


def test_the_l2_projection_of_waveforms_keeps_each_row_in_its_ball_and_direction():
    x0 = torch.zeros(3, 16000)
    x0[1] = 0.9  # near the edge of [-1, 1]: the clip keeps its bounds
    step = torch.randn(3, 16000, generator=torch.Generator().manual_seed(0)) * 0.05
    config = AttackConfig(norm="l2", eps=1.0)
    x = project(x0 + step, x0, config, (-1.0, 1.0))
    norms = (x - x0).flatten(1).norm(dim=1)
    assert torch.all(norms <= 1.0 + 1e-5) and norms[0] == pytest.approx(1.0, rel=1e-5)  # 6.3 → scaled to ε
    assert torch.nn.functional.cosine_similarity(x[0] - x0[0], step[0], dim=0) > 0.999
    assert float(x.max()) <= 1.0  # clipped to the amplitude bounds after scaling
    small = project(x0 + step * 0.01, x0, config, (-1.0, 1.0))
    torch.testing.assert_close(small[0], (x0 + step * 0.01)[0])  # inside the ball: unchanged


# ---- the report --------------------------------------------------------------------------------------


def wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), 16000, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def audio_rows():
    rows = []
    for item in ("q1", "q2"):  # two questions about one clip
        for variant, media in (("clean", "c"), ("pgd", f"adv-{item}")):
            extra = {"media_id": media, "clean_media_id": "c"}
            if variant == "pgd":
                extra |= {"perturbation_l2": 0.03, "perturbation_linf": 0.02, "perturbation_units": "waveform"}
                extra |= {"attack_norm": "linf", "attack_eps": 0.02}
            cert = {"certified": True, "certified_label": "yes", "certified_radius": 0.05, "radius_space": "waveform"}
            rows += [make_row(item, variant, None, **extra), make_row(item, variant, 0.05, **extra, **cert)]
    for row in rows:
        row["covered"], row["certificate"] = coverage(row)
    return rows


def test_the_report_plays_each_clip_in_place_and_compares_radius_and_perturbation_in_waveform_units():
    tone = 0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)
    clips = {"c": wav(tone), "adv-q1": wav(tone + 0.02), "adv-q2": wav(tone - 0.02)}
    media = {k: audio_clip(v) for k, v in clips.items()}
    rows = audio_rows()
    audit = {"id": "a1", "modality": "audio", "attacks": [{"name": "pgd", "norm": "linf", "eps": 0.02}]}
    html = render(audit, rows, summarize(rows), media)["report.html"].decode()
    assert "media-src data:" in html.split('http-equiv="Content-Security-Policy" content="')[1].split('"')[0]
    players = html.split("<audio controls")[1:]
    assert len(players) == 3  # the shared clean clip once, each question's attacked clip
    src = players[1].split('src="')[1].split('"')[0]
    assert src.startswith("data:audio/wav;base64,")
    decoded, rate = sf.read(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert rate == 16000 and np.abs(decoded - (tone + 0.02)).max() < 1e-3
    assert "0.02 (waveform amplitude)" in html and "‖δ‖∞ = 0.02" in html
    defended = next(r for r in rows if r["variant"] == "pgd" and r["sigma"] is not None)
    assert defended["covered"] is True and defended["certificate"].startswith("L∞ attack")  # same units: compared
    assert summarize(rows)["certification"]["radii"] == [0.0, 0.025, 0.05, 0.1, 0.2]


# ---- on the real stack ---------------------------------------------------------------------------------


def csv_rows(client, key, audit_id):
    text = client.get(f"/v1/audits/{audit_id}/report?format=csv", headers=auth(key)).text
    return list(csv.DictReader(io.StringIO(text)))


def test_audio_audit_input_is_checked_before_anything_is_stored(client, keys, qwen_audio_path):
    key = keys["alpha"]

    def post(spec):
        return client.post("/v1/audits", headers=auth(key), json=spec)

    r = post(tones_spec(None))  # the default model is the image demo model
    assert r.status_code == 422 and "takes image input; the tones set is audio" in r.json()["detail"], r.text
    r = post({"dataset": {"format": "shapes", "count": 1}, "model": qwen_audio_path})
    assert r.status_code == 422 and "takes audio input; the shapes set is image" in r.json()["detail"], r.text
    r = post(tones_spec(qwen_audio_path, attacks=[{"name": "universal"}]))
    assert r.status_code == 422 and "no universal attack on audio" in r.json()["detail"]
    r = post(tones_spec(qwen_audio_path, attacks=[{"name": "pgd", "eps": 0.5}]))
    assert r.status_code == 422 and "at most 0.1, got 0.5" in r.json()["detail"]
    r = post(tones_spec(qwen_audio_path, dataset={"format": "audio-jsonl"}))
    assert r.status_code == 422 and "needs an archive" in r.json()["detail"]
    assert client.get("/v1/audits", headers=auth(key)).json()["items"] == []  # nothing stored


@pytest.mark.slow
def test_a_tone_audit_runs_end_to_end_with_playable_clips(client, keys, spawn_worker, settings, qwen_audio_path):
    spawn_worker(QUEUES)
    key = keys["alpha"]
    defense = {"sigmas": [0.05], "num_samples": 3, "max_new_tokens": 3, "certify": True, "certify_n0": 2}
    r = client.post("/v1/audits", headers=auth(key), json=tones_spec(qwen_audio_path, defense=defense))
    assert r.status_code == 202, r.text
    audit_id = r.json()["id"]
    audit = wait_audit(client, key, audit_id)
    assert audit["status"] == "succeeded", audit
    assert audit["spec"]["defense"]["noise_space"] == "waveform" and audit["progress"]["done"] == 4
    assert audit_jobs(settings.database_url, audit_id) == 4 * 3  # items × variants × σ
    rows = csv_rows(client, key, audit_id)
    assert len(rows) == 4 * 3 * 2 and {r["variant"] for r in rows} == {"clean", "pgd", "pgd-l2"}
    attacked = [r for r in rows if r["variant"] != "clean"]
    assert all(r["perturbation_units"] == "waveform" and "waveform amplitude" in r["threat_model"] for r in attacked)
    assert all(float(r["perturbation_linf"]) <= 0.02 + 1e-6 for r in attacked if r["variant"] == "pgd")
    assert all(float(r["perturbation_l2"]) <= 1.0 + 1e-5 for r in attacked if r["variant"] == "pgd-l2")
    defended = [r for r in rows if r["sigma"]]
    assert all(r["noise_space"] == "waveform" and r["radius_space"] == "waveform" for r in defended)
    assert all(r["certified"] in ("True", "False") and "not comparable" not in r["certificate"] for r in defended)
    html = client.get(f"/v1/audits/{audit_id}/report?format=html", headers=auth(key)).text
    sources = [p.split('src="')[1].split('"')[0] for p in html.split("<audio controls")[1:]]
    assert len(sources) == 2 + 4 * 2  # clips 0 and 1 once each; every question's two attacked clips
    assert all(s.startswith("data:audio/wav;base64,") for s in sources)
    outputs = json.loads(items(settings.database_url, audit_id)[0][2])
    media = client.get(f"/v1/media/{outputs['pgd']['media_id']}", headers=auth(key)).json()
    assert media["modality"] == "audio" and media["content_type"] == "audio/wav"
    report = client.get(f"/v1/audits/{audit_id}/report?format=json", headers=auth(key)).json()
    assert report["summary"]["certification"]["radii"] == [0.0, 0.025, 0.05, 0.1, 0.2]


@pytest.mark.slow
@pytest.mark.chaos
def test_a_tone_audit_survives_its_gpu_worker_killed_mid_chunk(client, keys, spawn_worker, settings, qwen_audio_path):
    """Chunk 0 is attacked and stored; the GPU worker is SIGKILLed in chunk 1; the sweeper re-sends
    chunk 1 to a new worker; chunk 0's clips are untouched and no job or report row is doubled."""
    key = keys["alpha"]
    spawn_worker(("cpu", "audits"))
    gpu = spawn_worker(("gpu",))
    spec = tones_spec(qwen_audio_path, attacks=[{"name": "pgd", "steps": 600}])  # a chunk: ~20 s idle
    audit_id = client.post("/v1/audits", headers=auth(key), json=spec).json()["id"]
    before = kill_the_gpu_worker_in_chunk_1(client, key, audit_id, gpu, spawn_worker, settings.database_url)
    audit = wait_audit(client, key, audit_id, timeout=400)
    assert audit["status"] == "succeeded", audit
    after = {i: (at, out) for i, at, out, _ in items(settings.database_url, audit_id)}
    assert all(after[i] == before[i] for i in before) and len(after) == 4
    assert audit_jobs(settings.database_url, audit_id) == 4 * 2 * 1  # items × variants × σ: none twice
    rows = csv_rows(client, key, audit_id)
    keys_seen = [(r["item"], r["variant"], r["sigma"]) for r in rows]
    assert len(keys_seen) == len(set(keys_seen)) == 4 * 2 * 2


def zipped_set(folder: Path, name: str = "clips") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(f, Path(name) / f.relative_to(folder))
    return buf.getvalue()


def test_an_audio_jsonl_archive_is_checked_clip_by_clip(client, keys, spawn_worker, tmp_path):
    key = keys["alpha"]
    write_set(tmp_path / "good", 9, 2)
    (tmp_path / "bad").mkdir()
    write_set(tmp_path / "bad", 9, 1)
    next((tmp_path / "bad" / "audio").iterdir()).write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    spawn_worker(("cpu", "audits"))
    found = {}
    for name in ("good", "bad"):
        files = {"file": (f"{name}.zip", zipped_set(tmp_path / name))}
        r = client.post("/v1/datasets", headers=auth(key), files=files, data={"format": "audio-jsonl"})
        assert r.status_code == 202, r.text
        found[name] = wait_dataset(client, key, r.json()["id"])
    assert found["good"]["status"] == "ready" and found["good"]["items"] == 6, found
    assert found["bad"]["status"] == "invalid" and "audio audio/tones_9_00000.wav" in found["bad"]["error"], found
    generated = client.post(
        "/v1/datasets",
        headers=auth(key),
        files={"file": ("t.zip", zipped_set(tmp_path / "good"))},
        data={"format": "tones"},
    )
    assert generated.status_code == 422 and "generated" in generated.json()["detail"]
