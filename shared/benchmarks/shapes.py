"""Synthetic shapes set: coloured shapes on small images, with POPE-style questions.

Everything is derived from one integer seed, so a set can be regenerated exactly. Questions
follow POPE's jsonl format (``question_id``, ``image``, ``text``, ``label``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 30),
    "purple": (150, 50, 190),
}
IMAGE_SIZE = 64
MAX_SHAPES = 2


@dataclass(frozen=True)
class PlacedShape:
    shape: str
    colour: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class Scene:
    shapes: tuple[PlacedShape, ...]
    background: tuple[int, int, int]

    def colour_of(self, shape: str) -> str | None:
        return next((s.colour for s in self.shapes if s.shape == shape), None)


@dataclass(frozen=True)
class Question:
    question_id: int
    image: str
    text: str
    label: str


def random_scene(rng: random.Random) -> Scene:
    """1–2 shapes of distinct types, non-overlapping, on a light background."""
    count = rng.randint(1, MAX_SHAPES)
    kinds = rng.sample(SHAPES, count)
    placed: list[PlacedShape] = []
    while len(placed) < count:
        size = rng.randint(18, 28)
        x0 = rng.randint(2, IMAGE_SIZE - size - 2)
        y0 = rng.randint(2, IMAGE_SIZE - size - 2)
        box = (x0, y0, x0 + size, y0 + size)
        if any(_overlap(box, p.box) for p in placed):
            placed = []  # the first shape may leave no room: start the layout again
            continue
        placed.append(PlacedShape(kinds[len(placed)], rng.choice(list(COLOURS)), box))
    grey = rng.randint(200, 245)
    return Scene(tuple(placed), (grey, grey, grey))


def _overlap(a: tuple[int, ...], b: tuple[int, ...], margin: int = 2) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def render(scene: Scene) -> Image.Image:
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), scene.background)
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        fill = COLOURS[s.colour]
        x0, y0, x1, y1 = s.box
        if s.shape == "circle":
            draw.ellipse(s.box, fill=fill)
        elif s.shape == "square":
            draw.rectangle(s.box, fill=fill)
        elif s.shape == "triangle":
            draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)
        else:  # cross
            t = (x1 - x0) // 3
            draw.rectangle((x0 + t, y0, x1 - t, y1), fill=fill)
            draw.rectangle((x0, y0 + t, x1, y1 - t), fill=fill)
    return image


def existence_question(shape: str) -> str:
    return f"Is there a {shape} in the image?"


def colour_question(shape: str) -> str:
    return f"What colour is the {shape}?"


def questions_for(scene: Scene, rng: random.Random) -> list[tuple[str, str]]:
    """Two (prompt, answer) pairs: one POPE-style yes/no (balanced), one colour question."""
    present = [s.shape for s in scene.shapes]
    absent = [k for k in SHAPES if k not in present]
    if rng.random() < 0.5:
        yes_no = (existence_question(rng.choice(present)), "yes")
    else:
        yes_no = (existence_question(rng.choice(absent)), "no")
    target = rng.choice(scene.shapes)
    return [yes_no, (colour_question(target.shape), target.colour)]


def generate_set(seed: int, count: int) -> list[tuple[Scene, list[tuple[str, str]]]]:
    """``count`` scenes with their questions, fully determined by ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        scene = random_scene(rng)
        out.append((scene, questions_for(scene, rng)))
    return out


def write_set(seed: int, count: int, out_dir: Path) -> list[Question]:
    """Write ``count`` images and a POPE-format ``questions.jsonl`` (two questions per image)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    questions: list[Question] = []
    for i, (scene, pairs) in enumerate(generate_set(seed, count)):
        name = f"shapes_{seed}_{i:05d}.png"
        render(scene).save(out_dir / name)
        for text, label in pairs:
            questions.append(Question(len(questions), name, text, label))
    with (out_dir / "questions.jsonl").open("w") as fh:
        for q in questions:
            fh.write(json.dumps(q.__dict__) + "\n")
    return questions


def read_questions(path: Path) -> list[Question]:
    with path.open() as fh:
        return [Question(**json.loads(line)) for line in fh if line.strip()]


class RenderedScenes(Sequence[Image.Image]):
    """Scenes rendered on access (64×64 RGB): a large training set costs no memory."""

    def __init__(self, scenes: Sequence[Scene]):
        self.scenes = list(scenes)

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i):  # type: ignore[override]
        return render(self.scenes[i])
