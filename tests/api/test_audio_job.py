"""An audio defense job over REST on the trained audio demo model, through the real stack: a held-out
clip of the tones set, noise on the waveform, the right answer, every candidate traceable."""

import pytest

from shared.benchmarks.tones import write_set
from shared.config import DEMO_AUDIO_MODEL
from tests.helpers import auth, wait_finished

HELD_OUT_SEED = 20261203  # the seed the audio model's held-out test uses (training: 3000/2999)


@pytest.fixture()
def service_env(service_env):
    return service_env | {"SMOOTHGUARD_KNOWN_MODELS": str(DEMO_AUDIO_MODEL)}


@pytest.mark.slow
def test_an_audio_job_on_the_demo_model_answers_through_the_real_stack(client, keys, worker, tmp_path):
    questions = write_set(tmp_path / "set", HELD_OUT_SEED, 1)
    count = next(q for q in questions if q.category == "count")
    wav = (tmp_path / "set" / count.audio).read_bytes()
    form = {"prompt": count.text, "model": str(DEMO_AUDIO_MODEL), "sigma": "0.05", "num_samples": "10", "seed": "5"}
    r = client.post("/v1/jobs", headers=auth(keys["alpha"]), files={"file": ("clip.wav", wav, "audio/wav")}, data=form)
    assert r.status_code == 202, r.text
    body = wait_finished(client, keys["alpha"], r.json()["id"])
    assert body["status"] == "succeeded" and body["answer"] == count.label, body
    assert body["params"]["noise_space"] == "waveform" and body["consensus"]["total"] == 10
    samples = client.get(f"/v1/jobs/{body['id']}/samples", headers=auth(keys["alpha"])).json()
    assert len(samples) == 11 and samples[0]["is_clean"] and sum(s["selected"] for s in samples) == 1
    noisy = [s for s in samples if not s["is_clean"]]
    assert all(s["noise_space"] == "waveform" and s["sigma"] == 0.05 and s["seed"] is not None for s in noisy)
    assert len({s["seed"] for s in noisy}) == 10  # each candidate its own seed: regenerable bit for bit
