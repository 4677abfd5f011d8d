"""PGD / EOT-PGD on tiny random LLaVA and Qwen2.5-VL checkpoints: constraints, direction,
determinism, batching and the generator left as it was."""

import functools

import numpy as np
import pytest
import torch

from shared.attacks import AttackConfig, AttackResult, attack_images
from shared.attacks.losses import encode_targets, row_losses
from shared.attacks.pixels import PixelMap
from tests.attacks.conftest import PROMPTS, TARGETS, png_round_trip

FAST = {"steps": 8, "eps": 16 / 255}


@pytest.fixture(params=["tiny_llava", "tiny_qwen_vl"])
def generator(request):
    return request.getfixturevalue(request.param)


def clean_losses(generator, images, prompts=PROMPTS, targets=TARGETS):
    """The CE of the targets on the clean images, by the same teacher forcing, no perturbation."""
    zero = AttackConfig(steps=1, step_size=1e-12, random_start=False)
    return attack_images(generator, images, prompts, targets, zero).losses


def originals(generator, images):
    pm = PixelMap.for_generator(generator)
    return torch.cat([pm.from_image(im) for im in images])


@pytest.mark.parametrize(("norm", "eps"), [("linf", 8 / 255), ("l2", 0.5)])
def test_returned_8bit_images_respect_the_budget_and_survive_png(generator, scenes, norm, eps):
    result = attack_images(generator, scenes, PROMPTS, TARGETS, AttackConfig(norm=norm, eps=eps, steps=6))
    assert isinstance(result, AttackResult) and len(result.images) == 3 and result.steps == 6
    x0 = originals(generator, scenes)
    pm = PixelMap.for_generator(generator)
    for k, image in enumerate(result.images):
        assert image.mode == "RGB" and image.size == (x0.shape[3], x0.shape[2])
        back = png_round_trip(image)
        assert np.array_equal(np.asarray(back), np.asarray(image))
        d = pm.from_image(back)[0] - x0[k]
        assert float(pm.from_image(back).min()) >= 0 and float(pm.from_image(back).max()) <= 1
        assert float(d.abs().max()) <= eps + 1e-6 and float(d.norm()) <= (eps + 1e-6 if norm == "l2" else 1e9)
        assert result.linf[k] == pytest.approx(float(d.abs().max()), abs=1e-6)
        assert result.l2[k] == pytest.approx(float(d.norm()), abs=1e-4)
        assert result.linf[k] > 0  # it did perturb
    if norm == "linf":  # sign steps from a random start use the whole budget
        assert max(result.linf) == pytest.approx(eps, abs=1e-6)


def test_targeted_lowers_and_untargeted_raises_the_target_loss(tiny_llava, scenes):
    clean = clean_losses(tiny_llava, scenes)
    down = attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(**FAST)).losses
    up = attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(targeted=False, **FAST)).losses
    assert all(d < c - 0.02 for d, c in zip(down, clean, strict=True)), (clean, down)
    assert all(u > c + 0.02 for u, c in zip(up, clean, strict=True)), (clean, up)


def test_reported_loss_is_the_models_own_loss_on_the_returned_image(generator, scenes):
    result = attack_images(generator, scenes[:1], PROMPTS[:1], TARGETS[:1], AttackConfig(steps=3))
    batch = encode_targets(generator, PROMPTS[:1], TARGETS[:1], eos=True, images=result.images)
    enc = generator.processor(images=result.images, text=[generator.chat_text(PROMPTS[0])], return_tensors="pt")
    labels = torch.full_like(batch.inputs["input_ids"], -100)
    labels[:, -batch.labels.shape[1] :] = batch.labels
    with torch.no_grad():
        hf = generator.model(**batch.inputs, pixel_values=enc["pixel_values"], labels=labels).loss
        ours = row_losses(generator.model, batch, {"pixel_values": enc["pixel_values"]})
    assert float(ours[0]) == pytest.approx(float(hf), abs=1e-5)
    assert result.losses[0] == pytest.approx(float(hf), abs=1e-4)


def test_deterministic_for_a_seed(tiny_llava, scenes):
    def run(seed):
        return attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(steps=3, seed=seed))

    a, b, c = run(1), run(1), run(2)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images, strict=True))
    assert a.losses == b.losses
    assert any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, c.images, strict=True))


def count_forwards(monkeypatch, generator):
    """Record the batch size of every model forward."""
    calls = []
    real = generator.model.forward

    @functools.wraps(real)
    def forward(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(generator.model, "forward", forward)
    return calls


@pytest.mark.parametrize("space", ["normalized", "pixel"])
def test_eot_batches_items_times_draws_in_one_forward_per_step(generator, scenes, monkeypatch, space):
    calls = count_forwards(monkeypatch, generator)
    config = AttackConfig(method="eot", eot_samples=4, steps=3, noise_space=space)
    result = attack_images(generator, scenes, PROMPTS, TARGETS, config)
    assert len(result.images) == 3 and len(result.losses) == 3 and len(result.linf) == 3
    # steps + 1 EOT forwards over 3 items × 4 draws, then one clean forward over the 3 items
    assert calls == [12] * 4 + [3]


def test_eot_is_chunked_only_by_max_batch_size(tiny_llava, scenes, monkeypatch):
    calls = count_forwards(monkeypatch, tiny_llava)
    monkeypatch.setattr(tiny_llava, "max_batch_size", 5)
    attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(method="eot", eot_samples=4, steps=2))
    assert calls == [5, 5, 2] * 3 + [3]


def test_eot_noise_changes_the_attack(tiny_llava, scenes):
    plain = attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(steps=3))
    eot = attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(method="eot", eot_samples=2, steps=3))
    assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(plain.images, eot.images, strict=True))


def test_universal_gives_one_image_with_the_loss_over_all_prompts(generator, scenes, monkeypatch):
    calls = count_forwards(monkeypatch, generator)
    image = scenes[0]
    result = attack_images(generator, [image] * 3, PROMPTS, TARGETS, AttackConfig(universal=True, steps=4))
    assert len(result.images) == 1 and len(result.losses) == 1 and len(result.linf) == 1
    assert calls == [3] * 5 + [3]
    monkeypatch.undo()
    per_prompt = clean_losses(generator, result.images * 3)
    assert result.losses[0] == pytest.approx(float(np.mean(per_prompt)), abs=1e-4)
    assert result.losses[0] < float(np.mean(clean_losses(generator, [image] * 3)))


def test_universal_refuses_different_images(tiny_llava, scenes):
    with pytest.raises(ValueError, match="universal"):
        attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(universal=True, steps=1))


@pytest.mark.parametrize(
    ("images", "prompts", "targets", "config", "message"),
    [
        (2, 3, 3, AttackConfig(steps=1), "2 images but 3 prompts"),
        (3, 3, 2, AttackConfig(steps=1), "3 prompts but 2 targets"),
        (3, 3, 3, AttackConfig(steps=1, method="eot", noise_space="waveform"), "waveform"),
    ],
)
def test_mismatched_inputs_are_refused(tiny_llava, scenes, images, prompts, targets, config, message):
    with pytest.raises(ValueError, match=message):
        attack_images(tiny_llava, scenes[:images], PROMPTS[:prompts], TARGETS[:targets], config)


def test_generator_is_left_as_it_was(tiny_llava, scenes):
    before = tiny_llava.answer_batch(scenes, PROMPTS, max_new_tokens=4)
    flags = [p.requires_grad for p in tiny_llava.model.parameters()]
    attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(steps=2))
    assert [p.requires_grad for p in tiny_llava.model.parameters()] == flags
    assert not tiny_llava.model.training
    assert all(p.grad is None for p in tiny_llava.model.parameters())
    assert [g.text for g in tiny_llava.answer_batch(scenes, PROMPTS, max_new_tokens=4)] == [g.text for g in before]


def test_images_of_different_processed_sizes_are_attacked_in_groups(tiny_qwen_vl, scenes):
    tall = scenes[1].resize((40, 100))  # smart-resizes to a 112×28 grid, not 56×56
    result = attack_images(tiny_qwen_vl, [scenes[0], tall, scenes[2]], PROMPTS, TARGETS, AttackConfig(steps=2))
    assert [im.size for im in result.images] == [(56, 56), (28, 112), (56, 56)]
    assert max(result.linf) <= 16 / 255 + 1e-6


def test_stop_loss_returns_a_just_successful_example_with_fewer_forwards(tiny_llava, scenes, monkeypatch):
    full = attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(**FAST))
    clean = clean_losses(tiny_llava, scenes)
    stop = float(np.mean(clean)) - 0.02  # reached within a few steps by every item
    calls = count_forwards(monkeypatch, tiny_llava)
    early = attack_images(tiny_llava, scenes, PROMPTS, TARGETS, AttackConfig(stop_loss=stop, **FAST))
    assert len(calls) < FAST["steps"] + 2  # every item stopped before the last step
    assert all(e > f for e, f in zip(early.losses, full.losses, strict=True))
