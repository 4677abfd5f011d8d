"""PGD and EOT-PGD on images, for any generator whose processor layout ``PixelMap`` knows.

The attack optimises the [0, 1] image at the resolution the model sees; the returned images are
8-bit (what survives a PNG) at that resolution, inside the ε-ball around the preprocessed clean
image, so feeding them back through the processor reproduces the attacked ``pixel_values``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from shared.attacks.config import AttackConfig
from shared.attacks.losses import encode_targets
from shared.attacks.objective import MediaFn, defense_noise, frozen, objectives, optimize
from shared.attacks.pixels import PixelMap, to_image
from shared.attacks.threat import perturbation_norms, quantize
from shared.smoothing.noise import on_unit_image
from shared.smoothing.types import NOISE_SPACES_BY_MODALITY

PIXEL_RANGE = (0.0, 1.0)


@dataclass
class AttackResult:
    """Per attacked image (one for a universal attack): the 8-bit adversarial image, the clean
    teacher-forced CE of its target(s) on that image (mean over prompts when universal), and
    the L∞ / L2 norms of its perturbation in [0, 1] pixel units."""

    images: list[Image.Image]
    losses: list[float]
    linf: list[float]
    l2: list[float]
    steps: int
    ms: float


def attack_images(
    generator: Any,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    targets: Sequence[str],
    config: AttackConfig,
) -> AttackResult:
    """Attack ``images[i]`` under ``prompts[i]`` towards (targeted) or away from ``targets[i]``.

    With ``config.universal``, ``images`` holds one image (or copies of one) and the single
    perturbation is optimised over all prompts. Items are batched; a set of images that the
    processor maps to different sizes is attacked one size group at a time.
    """
    t0 = time.perf_counter()
    _check_inputs(images, prompts, targets, config)
    pixmap = PixelMap.for_generator(generator)
    x0s = [pixmap.from_image(im) for im in (images[:1] if config.universal else images)]
    groups = [list(range(len(prompts)))] if config.universal else _size_groups(x0s)
    out: dict[int, tuple[Image.Image, float, float, float]] = {}  # image, loss, linf, l2
    with frozen(generator.model):
        for group in groups:
            x0 = (x0s[0] if config.universal else torch.cat([x0s[i] for i in group])).to(generator.device)
            media = [images[0] if config.universal else images[i] for i in group]
            adv, losses = _attack_group(
                generator, pixmap, x0, media, [prompts[i] for i in group], [targets[i] for i in group], config
            )
            linf, l2 = perturbation_norms(adv, x0)
            for k in range(len(adv)):  # one row per image; a universal group has a single row
                out[group[k]] = (to_image(adv[k]), losses[k], linf[k], l2[k])
    images_out, losses_out, linf_out, l2_out = (list(col) for col in zip(*(out[i] for i in sorted(out)), strict=True))
    return AttackResult(
        images=images_out,
        losses=losses_out,
        linf=linf_out,
        l2=l2_out,
        steps=config.steps,
        ms=(time.perf_counter() - t0) * 1e3,
    )


def _attack_group(
    generator: Any,
    pixmap: PixelMap,
    x0: torch.Tensor,
    images: list[Image.Image],
    prompts: list[str],
    targets: list[str],
    config: AttackConfig,
) -> tuple[torch.Tensor, list[float]]:
    """The quantised adversarial inputs ``[N, 3, H, W]`` of one same-size group and their clean
    per-item CE (N = 1 when universal)."""
    batch = encode_targets(generator, prompts, targets, eos=config.target_eos, images=images)
    media = image_media(generator.model, pixmap, config)
    attack, clean = objectives(generator.model, batch.to(generator.device), media, config, generator.max_batch_size)
    best = optimize(x0, attack, config, PIXEL_RANGE)
    adv = quantize(best, x0, config)
    loss, _ = clean(adv, need_grad=False)
    return adv, loss.tolist()


def image_media(model: Any, pixmap: PixelMap, config: AttackConfig) -> MediaFn:
    """``pixel_values`` for a chunk of images ``[R, 3, H, W]``, with the defense's noise where
    asked, placed where the defense places it: on each image's ``pixel_values`` block
    (``normalized``) or on the [0, 1] image laid out ``[H, W, C]`` as the defense reads it
    (``pixel``, clipped) — the same draw for the same seed as the defense's candidate."""
    add_noise = defense_noise(config)
    before_processor = on_unit_image(config.noise_space)

    def media(x: torch.Tensor, noisy: bool) -> dict[str, torch.Tensor]:
        rows = x.shape[0]
        if noisy and before_processor:
            x = add_noise(x.permute(0, 2, 3, 1), rows).permute(0, 3, 1, 2)
        pv = pixmap.to_pixel_values(x)
        if noisy and not before_processor:
            pv = add_noise(pv, rows)
        return {"pixel_values": pv.to(model.dtype)}

    return media


def _size_groups(x0s: list[torch.Tensor]) -> list[list[int]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(x0s):
        groups.setdefault(tuple(x.shape), []).append(i)
    return list(groups.values())


def _check_inputs(images: Sequence[Image.Image], prompts: Sequence[str], targets: Sequence[str], config: AttackConfig):
    if not images or not prompts:
        raise ValueError("need at least one image and one prompt")
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    if config.method == "eot" and config.noise_space not in NOISE_SPACES_BY_MODALITY["image"]:
        spaces = " or ".join(repr(s) for s in NOISE_SPACES_BY_MODALITY["image"])
        raise ValueError(f"image EOT needs noise_space {spaces}, not {config.noise_space!r}")
    if config.universal:
        first = images[0].convert("RGB")
        if any(im.size != first.size or im.convert("RGB").tobytes() != first.tobytes() for im in images[1:]):
            raise ValueError("a universal attack takes one image (or identical copies of it)")
    elif len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts (one image per prompt unless universal)")
