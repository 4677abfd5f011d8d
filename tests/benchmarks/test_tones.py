import json
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from shared.benchmarks.items import DatasetError
from shared.benchmarks.tones import (
    COUNT_WORDS,
    PITCHES,
    SAMPLE_RATE,
    generate_set,
    question_texts,
    read_set,
    render,
    write_set,
)

FRAME = SAMPLE_RATE // 100  # 10 ms


def beeps_heard(samples: np.ndarray, rate: int) -> list[str]:
    """The beeps of a waveform, by energy: runs of loud 10 ms frames, each named by the
    frequency of its spectral peak (between the low and high ranges: 700 Hz)."""
    frame = rate // 100
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame)
    loud = np.sqrt((frames**2).mean(1)) > 0.05
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(int), [0]])))
    heard = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        segment = samples[start * frame : end * frame]
        peak = np.argmax(np.abs(np.fft.rfft(segment))) * rate / len(segment)
        heard.append("high" if peak > 700 else "low")
    return heard


def expected_label(text: str, heard: list[str]) -> str:
    if text.startswith("How many"):
        return COUNT_WORDS[len(heard) - 1]
    if "first" in text:
        return heard[0]
    if "last" in text:
        return heard[-1]
    pitch = next(p for p in PITCHES if f" {p} " in text)
    return "yes" if pitch in heard else "no"


def test_sets_are_deterministic_per_seed(tmp_path):
    a = write_set(tmp_path / "a", 11, 6)
    b = write_set(tmp_path / "b", 11, 6)
    assert a == b and len(a) == 18
    assert all((tmp_path / "a" / q.audio).read_bytes() == (tmp_path / "b" / q.audio).read_bytes() for q in a)
    assert generate_set(12, 6) != generate_set(11, 6)
    np.testing.assert_array_equal(render(generate_set(11, 1)[0][0]), render(generate_set(11, 1)[0][0]))


def test_labels_match_what_the_written_audio_holds(tmp_path):
    """Every label recomputed from the WAV files alone: beeps found by energy, pitch by spectrum."""
    write_set(tmp_path, 5, 60)
    items = read_set(tmp_path)
    assert len(items) == 180
    for item in items:
        heard = beeps_heard(item.waveform.samples, item.waveform.sample_rate)
        assert 1 <= len(heard) <= len(COUNT_WORDS), item
        assert item.label == expected_label(item.text, heard), (item.question_id, item.text, heard)


def test_clips_are_one_to_three_seconds_with_mild_background_noise():
    for clip, _ in generate_set(3, 200):
        wave = render(clip)
        assert wave.dtype == np.float32 and SAMPLE_RATE <= len(wave) <= 3 * SAMPLE_RATE
        assert np.abs(wave).max() <= 1.0
        quiet = wave[: clip.beeps[0].start]  # before the first beep: the background alone
        assert 0.001 < quiet.std() < 0.012


def test_answers_are_balanced_and_every_question_is_asked():
    asked = [q for _, qs in generate_set(7, 2000) for q in qs]
    by_category = {cat: Counter(label for _, label, c in asked if c == cat) for cat in ("count", "order", "existence")}
    assert 0.45 < by_category["existence"]["yes"] / 2000 < 0.55
    assert 0.45 < by_category["order"]["high"] / 2000 < 0.55
    assert all(400 < by_category["count"][w] < 600 for w in COUNT_WORDS)
    assert {text for text, _, _ in asked} == set(question_texts())


def test_read_set_round_trips_the_written_set(tmp_path):
    questions = write_set(tmp_path, 2, 4)
    items = read_set(tmp_path)
    assert [(i.question_id, i.audio, i.text, i.label, i.category) for i in items] == [
        (q.question_id, q.audio, q.text, q.label, q.category) for q in questions
    ]
    assert all(i.audio.startswith("audio/") and i.waveform.sample_rate == SAMPLE_RATE for i in items)
    clip = generate_set(2, 1)[0][0]
    np.testing.assert_allclose(items[0].waveform.samples, render(clip), atol=2 / 32768)  # 16-bit PCM
    info = sf.info(tmp_path / items[0].audio)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")


def test_read_set_takes_a_users_own_clips(tmp_path):
    """Any rate, string ids, no category: the layout is all that is required."""
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "door.wav", np.zeros(8000, dtype=np.float32), 8000)
    line = {"question_id": "q-1", "audio": "clips/door.wav", "text": "Is there a high tone?", "label": "no"}
    (tmp_path / "questions.jsonl").write_text(json.dumps(line) + "\n\n")
    (item,) = read_set(tmp_path)
    assert (item.question_id, item.category, item.waveform.sample_rate, len(item.waveform.samples)) == (
        "q-1",
        "audio",
        8000,
        8000,
    )


def good_line(**changes):
    line = {"question_id": 1, "audio": "audio/a.wav", "text": "How many beeps are there?", "label": "one"}
    return json.dumps({k: v for k, v in {**line, **changes}.items() if v is not None})


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([good_line(), "{not json"], "questions.jsonl:2: malformed JSON"),
        ([good_line(label=None)], "questions.jsonl:1: missing field 'label'"),
        ([good_line(text=[3])], "questions.jsonl:1: field 'text' is a list, not a string or number or boolean"),
        ([good_line(question_id=True)], "field 'question_id' is a bool, not a string or number"),
        ([good_line(), good_line()], "questions.jsonl:2: duplicate question_id '1'"),
        ([good_line(audio="../a.wav")], "audio path '../a.wav' must stay inside the dataset folder"),
        ([good_line(audio="/etc/passwd")], "must stay inside the dataset folder"),
        ([good_line(audio="audio/missing.wav")], "audio 'audio/missing.wav' not found in ./, audio/"),
        ([good_line(audio="notes.txt")], "question '1': 'notes.txt' is not an audio file"),
        ([good_line(audio="outside/a.wav")], "leads outside"),
    ],
)
def test_bad_layouts_give_clear_errors(tmp_path, lines, message):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.zeros(1600, dtype=np.float32), SAMPLE_RATE)
    (tmp_path / "notes.txt").write_text("not audio")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (tmp_path / "outside").symlink_to(elsewhere)
    sf.write(elsewhere / "a.wav", np.zeros(1600, dtype=np.float32), SAMPLE_RATE)
    (tmp_path / "questions.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        read_set(tmp_path)


def test_a_missing_folder_or_question_file_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        read_set(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="questions.jsonl: file not found"):
        read_set(tmp_path)
