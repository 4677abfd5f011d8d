"""Noise-robust distillation on a tiny random LLaVA built in code: it moves the student's noisy
features toward the teacher's clean ones on held-out images, trains only the vision tower and
projector, is reproducible from its seed, and saves a checkpoint the ``hf`` backend loads."""

import random

import pytest
import torch
from transformers import AutoModelForImageTextToText

from shared.backends.registry import load_generator
from shared.benchmarks.demo_model import build_model
from shared.benchmarks.shapes import random_scene, render
from shared.config import Settings
from shared.robustify import DistilConfig, SigmaSchedule, UnsupportedLayout, VisionPath, distil, feature_mse
from tests.test_layout import ROOT, imports_of, under

CONFIG = DistilConfig(steps=8, batch=16, lr=3e-4, warmup=1, seed=7)


def shapes_images(seed: int, count: int):
    rng = random.Random(seed)
    return [render(random_scene(rng)) for _ in range(count)]


@pytest.fixture(scope="module")
def tiny():
    return build_model(seed=0, vision_hidden=32, text_hidden=32, layers=1)


@pytest.fixture(scope="module")
def train_images():
    return shapes_images(1, 64)


@pytest.fixture(scope="module")
def trained(tiny, train_images):
    model, processor = tiny
    return distil(model, processor, train_images, CONFIG)


def language_state(model):
    return {k: v for k, v in model.state_dict().items() if "vision_tower" not in k and "multi_modal_projector" not in k}


def test_distillation_reduces_noisy_feature_error_on_held_out_images(tiny, trained):
    model, processor = tiny
    student, _ = trained
    held_out = shapes_images(2, 24)
    before = feature_mse(model, model, processor, held_out, sigma=0.3, seed=5)
    after = feature_mse(model, student, processor, held_out, sigma=0.3, seed=5)
    assert after < 0.8 * before, (before, after)


def test_language_model_is_bit_identical_and_the_teacher_untouched(tiny, trained):
    model, _ = tiny
    student, _ = trained
    fresh, _ = build_model(seed=0, vision_hidden=32, text_hidden=32, layers=1)
    lm, original = language_state(student), language_state(model)
    assert lm.keys() == original.keys() and len(lm) > 5
    assert all(torch.equal(lm[k], original[k]) for k in lm)
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, model.state_dict()[k])]
    assert changed and all("vision_tower" in k or "multi_modal_projector" in k for k in changed)


def test_same_seed_same_weights_other_seed_other_weights(tiny, train_images, trained):
    model, processor = tiny
    student, record = trained
    again, record_again = distil(model, processor, train_images, CONFIG)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in student.state_dict().items())
    assert record_again.loss["curve"] == record.loss["curve"]
    other, _ = distil(model, processor, train_images, DistilConfig(steps=2, batch=16, lr=3e-4, warmup=1, seed=8))
    first, _ = distil(model, processor, train_images, DistilConfig(steps=2, batch=16, lr=3e-4, warmup=1, seed=7))
    assert not all(torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())


def test_record_says_what_ran(trained):
    _, record = trained
    info = record.to_dict()
    assert info["steps"] == 8 and info["stopped_by"] == "steps" and info["seed"] == 7
    assert info["noise_space"] == "pixel" and info["sigma"] == {
        "sigma_max": 0.55,
        "kind": "sqrt_uniform",
        "clean_fraction": 0.0,
    }
    assert info["trained_modules"] == ["vision_tower", "multi_modal_projector"]
    assert info["loss"]["last"] < info["loss"]["first"] and len(info["loss"]["curve"]) == 8
    assert info["trainable_parameters"] > 0 and info["frozen_parameters"] > 0


def test_saved_checkpoint_reloads_through_the_hf_backend_and_answers(tiny, trained, tmp_path, shapes_image):
    _, processor = tiny
    student, _ = trained
    student.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    generator = load_generator(str(tmp_path), settings=Settings(device="cpu", dtype="float32"))
    reloaded = generator.model.state_dict()  # type: ignore[attr-defined]
    assert all(torch.equal(v, reloaded[k]) for k, v in student.state_dict().items())
    [answer] = generator.answer_batch([shapes_image], ["What colour is the circle?"], max_new_tokens=3)  # type: ignore[attr-defined]
    assert isinstance(answer.text, str) and answer.num_tokens >= 1


def test_normalized_space_validation_callback_and_minutes_budget(tiny, train_images):
    model, processor = tiny
    calls = []

    def validate(m):
        calls.append(m)
        return {"acc": 0.5}

    config = DistilConfig(noise_space="normalized", steps=4, minutes=5, batch=8, eval_every=2, seed=1)
    student, record = distil(model, processor, train_images, config, validate=validate)
    assert calls == [student, student] and student is not model
    assert record.sigma["sigma_max"] == 2.0 and record.steps == 4
    assert [v["step"] for v in record.validation] == [2.0, 4.0] and record.validation[0]["acc"] == 0.5
    _, timed = distil(model, processor, train_images, DistilConfig(minutes=0.0, batch=4))
    assert timed.steps == 0 and timed.stopped_by == "minutes"


def test_llava_next_layout_is_supported(llava_next_path):
    from transformers import AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(llava_next_path)
    processor = AutoProcessor.from_pretrained(llava_next_path)
    student, record = distil(model, processor, shapes_images(3, 8), DistilConfig(steps=2, batch=4))
    assert record.model_type == "llava_next" and record.steps == 2
    assert feature_mse(model, student, processor, shapes_images(4, 4), sigma=0.0) > 0


def test_unsupported_layout_is_refused_by_name(qwen_vl_path, tiny, train_images):
    model = AutoModelForImageTextToText.from_pretrained(qwen_vl_path)
    with pytest.raises(UnsupportedLayout, match="qwen2_5_vl"):
        VisionPath.of(model)
    with pytest.raises(UnsupportedLayout, match="Qwen2_5_VLForConditionalGeneration"):
        distil(model, tiny[1], train_images, CONFIG)


def test_sigma_schedules_and_config_checks():
    gen = torch.Generator().manual_seed(0)
    draws = SigmaSchedule(0.5).draw(20000, gen)
    assert draws.min() >= 0 and draws.max() <= 0.5
    assert abs(draws.mean().item() - 2 / 3 * 0.5) < 0.01  # E[√U] = 2/3
    assert (
        SigmaSchedule(0.3, "fixed", clean_fraction=0.25).draw(20000, gen) == 0
    ).float().mean().item() == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ValueError, match="steps or minutes"):
        DistilConfig()
    with pytest.raises(ValueError, match="noise_space"):
        DistilConfig(noise_space="waveform", steps=1)  # type: ignore[arg-type]


def test_the_package_imports_no_platform_module():
    allowed = ("shared.smoothing", "shared.benchmarks", "shared.backends", "shared.robustify", "shared.media.decode")
    bad = [
        f"{p.name} imports {m}"
        for p in (ROOT / "shared" / "robustify").rglob("*.py")
        for m in imports_of(p)
        if under(m, "shared", "api", "workers") and not under(m, *allowed)
    ]
    assert bad == []
