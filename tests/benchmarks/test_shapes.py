import random

from shared.benchmarks.evaluate import is_correct
from shared.benchmarks.shapes import COLOURS, SHAPES, generate_set, random_scene, read_questions, render, write_set


def test_sets_are_deterministic_per_seed(tmp_path):
    a = write_set(11, 8, tmp_path / "a")
    b = write_set(11, 8, tmp_path / "b")
    assert a == b == read_questions(tmp_path / "a" / "questions.jsonl")
    assert (tmp_path / "a" / a[0].image).read_bytes() == (tmp_path / "b" / b[0].image).read_bytes()
    assert generate_set(12, 8) != generate_set(11, 8)


def test_questions_are_answerable_from_the_scene():
    for scene, pairs in generate_set(3, 300):
        kinds = [s.shape for s in scene.shapes]
        assert len(set(kinds)) == len(kinds)  # "the circle" is unambiguous
        (yes_no, label), (colour_q, colour) = pairs
        shape = yes_no.split()[3]
        assert (label == "yes") == (shape in kinds)
        asked = colour_q.rstrip("?").split()[-1]
        assert scene.colour_of(asked) == colour and colour in COLOURS


def test_yes_no_is_balanced_and_every_shape_appears():
    pairs = [p for _, ps in generate_set(5, 2000) for p in ps]
    yes = sum(label == "yes" for _, label in pairs)
    no = sum(label == "no" for _, label in pairs)
    assert 0.45 < yes / (yes + no) < 0.55
    assert all(any(shape in q for q, _ in pairs) for shape in SHAPES)


def test_render_draws_the_shape_colour_inside_its_box():
    scene = random_scene(random.Random(0))
    img = render(scene)
    s = scene.shapes[0]
    cx, cy = (s.box[0] + s.box[2]) // 2, (s.box[1] + s.box[3]) // 2 + 3
    assert img.getpixel((cx, cy)) == COLOURS[s.colour]


def test_pope_answer_parsing():
    assert is_correct("Yes.", "yes") and is_correct("no, there is none", "no") and not is_correct("", "yes")
    assert not is_correct("red", "blue")
