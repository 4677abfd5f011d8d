"""Undefended accuracy of a generator on a POPE-format question set (batched, never one by one)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from shared.benchmarks.shapes import Question
from shared.smoothing.aggregate import normalize_answer


@dataclass(frozen=True)
class Accuracy:
    correct: int
    total: int

    @property
    def value(self) -> float:
        return self.correct / self.total if self.total else 0.0


def is_correct(answer: str, label: str) -> bool:
    """The first word of the answer, normalised, equals the label (POPE's yes/no parsing)."""
    words = normalize_answer(answer).split()
    return bool(words) and normalize_answer(words[0]) == normalize_answer(label)


def accuracy(generator, questions: Sequence[Question], image_dir: Path, *, max_new_tokens: int = 8) -> Accuracy:
    images = {q.image: Image.open(image_dir / q.image).convert("RGB") for q in questions}
    answers = generator.answer_batch(
        [images[q.image] for q in questions], [q.text for q in questions], max_new_tokens=max_new_tokens
    )
    return Accuracy(sum(is_correct(a.text, q.label) for a, q in zip(answers, questions, strict=True)), len(questions))
