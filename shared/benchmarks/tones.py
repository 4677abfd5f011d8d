"""Synthetic tones set: short clips of low and high beeps in mild noise, with closed questions.

The audio analogue of :mod:`shared.benchmarks.shapes`. Everything is derived from one integer
seed, so a set can be regenerated exactly. A set on disk is a folder with ``questions.jsonl``
(one question a line: ``question_id``, ``audio``, ``text``, ``label``, ``category``) and the
16 kHz mono WAV files it names under ``audio/``; :func:`read_set` reads any folder of that
shape, so users can bring their own clips.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from shared.benchmarks.items import DatasetError
from shared.media.decode import Waveform, load_audio

SAMPLE_RATE = 16_000
PITCHES = {"low": (250.0, 500.0), "high": (1000.0, 2000.0)}  # frequency range in Hz
COUNT_WORDS = ("one", "two", "three", "four")
MAX_BEEPS = len(COUNT_WORDS)
MIN_SECONDS, MAX_SECONDS = 1.0, 3.0
BEEP_SECONDS = (0.12, 0.3)
MIN_GAP_SECONDS = 0.1  # silence before, between and after beeps
FADE_SECONDS = 0.01  # raised-cosine ramps: no clicks at the edges of a beep
LOUDNESS = (0.2, 0.6)  # a clip's beep amplitude
BACKGROUND = (0.002, 0.01)  # σ of a clip's background noise

COUNT_QUESTIONS = ("How many beeps are there?", "How many tones do you hear?")
ORDER_QUESTION = "Is the {position} tone high or low?"
POSITIONS = ("first", "last")
EXISTENCE_QUESTIONS = ("Is there a {pitch} tone?", "Do you hear a {pitch} beep?")
CATEGORIES = ("count", "order", "existence")
QUESTIONS_FILE = "questions.jsonl"
AUDIO_DIR = "audio"


@dataclass(frozen=True)
class Beep:
    pitch: str  # a key of PITCHES
    frequency: float  # Hz
    start: int  # first sample
    length: int  # samples
    amplitude: float


@dataclass(frozen=True)
class Clip:
    beeps: tuple[Beep, ...]
    length: int  # samples at SAMPLE_RATE
    background: float  # σ of the background noise
    noise_seed: int

    @property
    def pitches(self) -> list[str]:
        return [b.pitch for b in self.beeps]


@dataclass(frozen=True)
class Question:
    """One line of ``questions.jsonl``; ``audio`` is relative to the set's folder."""

    question_id: int | str
    audio: str
    text: str
    label: str
    category: str


@dataclass(frozen=True)
class AudioItem(Question):
    """A question with its clip, decoded (at the file's own sample rate)."""

    waveform: Waveform


def random_clip(rng: random.Random, lacks: str | None = None) -> Clip:
    """1–4 beeps of random pitch (none of pitch ``lacks``, if given), separated by silence,
    in a clip of 1–3 s."""
    count = rng.randint(1, MAX_BEEPS)
    allowed = [p for p in PITCHES if p != lacks]
    pitches = [rng.choice(allowed) for _ in range(count)]
    lengths = [_samples(rng.uniform(*BEEP_SECONDS)) for _ in range(count)]
    gap = _samples(MIN_GAP_SECONDS)
    needed = sum(lengths) + gap * (count + 1)
    total = max(needed, rng.randint(_samples(MIN_SECONDS), _samples(MAX_SECONDS)))
    weights = [rng.random() for _ in range(count + 1)]
    extra = [int((total - needed) * w / sum(weights)) for w in weights]
    loudness = rng.uniform(*LOUDNESS)
    beeps, at = [], 0
    for pitch, length, slack in zip(pitches, lengths, extra, strict=False):
        at += gap + slack
        frequency = rng.uniform(*PITCHES[pitch])
        beeps.append(Beep(pitch, frequency, at, length, loudness * rng.uniform(0.8, 1.0)))
        at += length
    return Clip(tuple(beeps), total, rng.uniform(*BACKGROUND), rng.getrandbits(32))


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def render(clip: Clip) -> np.ndarray:
    """The clip's waveform: float32 ``[length]`` at :data:`SAMPLE_RATE`."""
    wave = np.random.default_rng(clip.noise_seed).normal(0.0, clip.background, clip.length)
    fade = _samples(FADE_SECONDS)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    for b in clip.beeps:
        envelope = np.ones(b.length)
        envelope[:fade], envelope[-fade:] = ramp, ramp[::-1]
        t = np.arange(b.length) / SAMPLE_RATE
        wave[b.start : b.start + b.length] += b.amplitude * envelope * np.sin(2 * math.pi * b.frequency * t)
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def count_question(rng: random.Random, clip: Clip) -> tuple[str, str, str]:
    return rng.choice(COUNT_QUESTIONS), COUNT_WORDS[len(clip.beeps) - 1], "count"


def order_question(rng: random.Random, clip: Clip) -> tuple[str, str, str]:
    position = rng.choice(POSITIONS)
    beep = clip.beeps[0] if position == "first" else clip.beeps[-1]
    return ORDER_QUESTION.format(position=position), beep.pitch, "order"


def existence_question(rng: random.Random, clip: Clip, asked: str) -> tuple[str, str, str]:
    label = "yes" if asked in clip.pitches else "no"
    return rng.choice(EXISTENCE_QUESTIONS).format(pitch=asked), label, "existence"


def question_texts() -> list[str]:
    """Every question text the set asks (what a model trained on it must read)."""
    existence = [q.format(pitch=p) for q in EXISTENCE_QUESTIONS for p in PITCHES]
    return [*COUNT_QUESTIONS, *(ORDER_QUESTION.format(position=p) for p in POSITIONS), *existence]


def labels() -> list[str]:
    """Every answer the set expects."""
    return [*COUNT_WORDS, *PITCHES, "yes", "no"]


def generate_set(seed: int, count: int) -> list[tuple[Clip, list[tuple[str, str, str]]]]:
    """``count`` clips, each with three ``(text, label, category)`` questions (count, order,
    existence), fully determined by ``seed``. Half of the clips lack the pitch their existence
    question asks about, so its yes/no answer is balanced."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        lacks = rng.choice(list(PITCHES)) if rng.random() < 0.5 else None
        clip = random_clip(rng, lacks)
        asked = lacks or rng.choice(clip.pitches)
        out.append((clip, [count_question(rng, clip), order_question(rng, clip), existence_question(rng, clip, asked)]))
    return out


def write_set(out_dir: Path, seed: int, count: int) -> list[Question]:
    """Write ``count`` clips as 16 kHz mono WAVs under ``audio/`` and ``questions.jsonl``
    (three questions per clip)."""
    import soundfile as sf

    out_dir = Path(out_dir)
    (out_dir / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    questions: list[Question] = []
    for i, (clip, asked) in enumerate(generate_set(seed, count)):
        name = f"{AUDIO_DIR}/tones_{seed}_{i:05d}.wav"
        sf.write(out_dir / name, render(clip), SAMPLE_RATE, subtype="PCM_16")
        first = len(questions)
        questions += [Question(first + k, name, *question) for k, question in enumerate(asked)]
    with (out_dir / QUESTIONS_FILE).open("w") as fh:
        for q in questions:
            fh.write(json.dumps(asdict(q)) + "\n")
    return questions


def read_set(folder: Path) -> list[AudioItem]:
    """The questions of ``folder/questions.jsonl`` with their clips decoded (each file once). The
    layout is read by the ``audio-jsonl`` loader, the one reader of it (audits and uploads use it
    too): ``question_id`` (string or integer, unique), ``audio`` (a path inside the folder, or
    under its ``audio/``), ``text`` and ``label``, ``category`` optional (default ``audio``).
    Anything wrong — a missing file, a malformed line, a clip that is not audio — is a
    :class:`DatasetError` that names it."""
    from shared.benchmarks.loaders import load_audio_jsonl

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    waves: dict[str, Waveform] = {}
    items: list[AudioItem] = []
    for item in load_audio_jsonl(root).items:
        assert item.audio is not None and item.label is not None  # the loader requires both
        if item.audio not in waves:
            waves[item.audio] = _read_clip(root, item.audio, f"{root / QUESTIONS_FILE}: question {item.key!r}")
        qid = item.extra["question_id"]
        items.append(AudioItem(qid, item.audio, item.prompt, item.label, item.category, waves[item.audio]))
    return items


def _read_clip(root: Path, name: str, where: str) -> Waveform:
    """A clip the loader found under ``root``, decoded; one that leads outside ``root`` (a link) or
    does not decode is refused."""
    path = root / PurePosixPath(name)
    if not path.resolve().is_relative_to(root.resolve()):
        raise DatasetError(f"{where}: audio path {name!r} leads outside {root}")
    try:
        wave = load_audio(path.read_bytes())
    except Exception as exc:  # soundfile raises its own error types
        raise DatasetError(f"{where}: {name!r} is not an audio file this service can decode ({exc})") from exc
    if not len(wave.samples):
        raise DatasetError(f"{where}: {name!r} holds no samples")
    return wave
