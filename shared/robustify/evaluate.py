"""Greedy, undefended answers of a loaded model under ONE draw of the defense's noise per
question: how usable a base is at σ (the smoothed classifier's vote is made of such answers).

Question ``i``'s noise is seeded by ``(seed, i)`` alone, so the draw does not depend on batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from shared.backends.hf_common import chunks, generate_batch
from shared.benchmarks.evaluate import Accuracy, is_correct
from shared.robustify.inputs import specs_for, unit_image
from shared.smoothing.noise import candidate_seed, noisy_input, on_unit_image
from shared.smoothing.types import ImageNoiseSpace

ANSWER_STREAM = "robustify-answers"


def chat_text(processor: Any, prompt: str) -> str:
    """One user turn with an image then ``prompt``, plus the generation prompt (as the ``hf`` backend)."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def noisy_batch(
    processor: Any, images: Sequence[Image.Image], prompts: Sequence[str], specs: Sequence[Any]
) -> dict[str, torch.Tensor]:
    """Processor inputs (left-padded text) for ``images`` each noised by its spec: ``pixel`` σ on
    the [0, 1] image (clipped), ``normalized`` σ on its ``pixel_values`` block."""
    base = [unit_image(im) for im in images]
    on_image = all(on_unit_image(s.noise_space) for s in specs)
    if on_image:
        base = [noisy_input(x, s) for x, s in zip(base, specs, strict=True)]
    enc = processor(
        images=[x.numpy() for x in base],
        text=[chat_text(processor, p) for p in prompts],
        return_tensors="pt",
        padding=True,
        do_rescale=False,
    )
    batch = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
    if not on_image:
        px = batch["pixel_values"]
        batch["pixel_values"] = torch.stack([noisy_input(px[i], s) for i, s in enumerate(specs)])
    return batch


def answers_under_noise(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    *,
    sigma: float,
    noise_space: ImageNoiseSpace = "pixel",
    seed: int = 0,
    batch: int = 64,
    max_new_tokens: int = 8,
) -> list[str]:
    """One greedy answer per (image, prompt) under one noise draw of σ (``noise_space`` units;
    σ = 0: clean). The tokenizer is set to left padding, which batched generation needs."""
    processor.tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    seeds = [candidate_seed(seed, i, ANSWER_STREAM) for i in range(len(images))]
    specs = specs_for(torch.full((len(images),), float(sigma)), seeds, noise_space)
    out: list[str] = []
    for part in chunks(list(range(len(images))), batch):
        enc = noisy_batch(processor, [images[i] for i in part], [prompts[i] for i in part], [specs[i] for i in part])
        out += [g.text for g in generate_batch(model, processor, enc, device, max_new_tokens)]
    return out


def accuracy_under_noise(
    model: Any,
    processor: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    labels: Sequence[str],
    **kwargs: Any,
) -> Accuracy:
    """POPE-style accuracy (first word = label) of ``answers_under_noise`` (same keywords)."""
    answers = answers_under_noise(model, processor, images, prompts, **kwargs)
    return Accuracy(sum(is_correct(a, y) for a, y in zip(answers, labels, strict=True)), len(labels))


def noisy_accuracy_validator(
    processor: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    labels: Sequence[str],
    sigmas: Sequence[float],
    *,
    noise_space: ImageNoiseSpace = "pixel",
    seed: int = 0,
):
    """A ``distil`` validation callback: the model's accuracy on these labelled closed questions,
    clean and under one noise draw at each σ (``noise_space`` units), keyed ``val_accuracy_sigma_<σ>``."""

    def validate(model: Any) -> dict[str, float]:
        out = {}
        for sigma in dict.fromkeys([0.0, *sigmas]):
            acc = accuracy_under_noise(
                model, processor, images, prompts, labels, sigma=sigma, noise_space=noise_space, seed=seed
            )
            out[f"val_accuracy_sigma_{sigma:g}"] = acc.value
        return out

    return validate
