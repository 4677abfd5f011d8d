"""The attack against the bundled demo model (a trained LLaVA on 64×64 shapes images): targeted
PGD at ε = 16/255 flips most clean-correct answers on held-out questions, measured by the
generator's own answers on the PNG-round-tripped adversarial images."""

import pytest

from shared.attacks import AttackConfig, attack_images
from shared.backends.registry import load_generator
from shared.config import Settings
from tests.attacks.conftest import answers, png_round_trip, wrong_answer


@pytest.fixture(scope="module")
def demo():
    return load_generator(settings=Settings(device="cpu", dtype="float32"))


def test_teacher_forced_loss_of_the_models_own_answer_is_small(demo, held_out):
    questions, images = held_out
    prompts = [q.text for q in questions]
    clean = answers(demo, images, prompts)
    zero = AttackConfig(steps=1, step_size=1e-12, random_start=False)
    own = attack_images(demo, images, prompts, clean, zero).losses
    wrong = attack_images(demo, images, prompts, [wrong_answer(q) for q in questions], zero).losses
    # the batch is built as the generator builds it: its greedy answer + eos is the likely sequence
    assert max(own) < 0.3 and min(wrong) > 2 * max(own), (own, wrong)


def test_targeted_pgd_flips_most_clean_correct_answers(demo, held_out):
    questions, images = held_out
    prompts = [q.text for q in questions]
    clean = answers(demo, images, prompts)
    correct = [i for i, q in enumerate(questions) if clean[i] == q.label]
    assert len(correct) >= 14  # the demo model is ~99% accurate on held-out questions
    targets = [wrong_answer(q) for q in questions]
    result = attack_images(demo, images, prompts, targets, AttackConfig(eps=16 / 255, steps=20))
    assert max(result.linf) <= 16 / 255 + 1e-6
    adversarial = answers(demo, [png_round_trip(im) for im in result.images], prompts)
    flipped = [i for i in correct if adversarial[i] != questions[i].label]
    hit = [i for i in correct if adversarial[i] == targets[i]]
    print(f"flipped {len(flipped)}/{len(correct)}, target hit {len(hit)}/{len(correct)}, {result.ms:.0f} ms")
    assert len(flipped) >= 0.5 * len(correct)
    assert len(hit) >= 0.5 * len(correct)


def test_smoothguard_recovers_part_of_the_flips_of_a_just_successful_pgd(demo, held_out):
    """PGD at ε=16/255 stopped per item once its target is the likely answer (stop_loss = ln 2):
    it flips a clear share; SmoothGuard at σ=0.2 (normalised, 10 + clean) commits to far fewer of
    those flips (it answers right or abstains), measured against the undefended flips of this run.
    Against full-strength PGD (no early stop) it does not help on this model: see the README."""
    from shared.backends.registry import load_embedder
    from shared.smoothing import SmoothGuard
    from shared.smoothing.types import SmoothConfig

    questions, images = held_out
    prompts = [q.text for q in questions]
    clean = answers(demo, images, prompts)
    correct = [i for i, q in enumerate(questions) if clean[i] == q.label]
    config = AttackConfig(eps=16 / 255, steps=40, stop_loss=0.69)
    result = attack_images(demo, images, prompts, [wrong_answer(q) for q in questions], config)
    adversarial = [png_round_trip(im) for im in result.images]
    undefended = answers(demo, adversarial, prompts)
    flipped = [i for i in correct if undefended[i] != questions[i].label]
    guard = SmoothGuard(demo, load_embedder(), SmoothConfig(sigma=0.2, num_samples=10))
    defended = {i: guard.run(adversarial[i], prompts[i]) for i in correct}
    committed = [i for i in correct if defended[i].answer != questions[i].label and not defended[i].abstained]
    print(f"undefended flips {len(flipped)}/{len(correct)}, defended committed flips {len(committed)}")
    assert len(flipped) >= 0.25 * len(correct)
    assert len(committed) <= len(flipped) / 2
