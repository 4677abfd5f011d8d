"""The GPU half of an audit chunk: attack a batch of items and answer every variant undefended.

Attacks run batched over the chunk (``shared.attacks``); the undefended answers of all variants
of all items come from ONE batched ``answer_batch`` (chunked only by the generator's batch size).
Adversarial images are quantised to 8 bits and answered as the PNG the defense jobs will read.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from shared.audits.spec import AttackSpec, AuditSpec


@dataclass
class ChunkItem:
    prompt: str
    image: Image.Image
    target: str | None


@dataclass
class Variant:
    """One image an item is answered on; ``png`` holds a new adversarial image's bytes until it is
    stored as ``media_id`` (the clean and the universal image are stored already)."""

    image: Image.Image
    answer: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    png: bytes | None = None
    media_id: uuid.UUID | None = None


Progress = Callable[[str, list[Variant]], None]  # an attack's variant of every item, as it finishes


def attack_config(spec: AuditSpec, attack: AttackSpec, *, targeted: bool) -> Any:
    from shared.attacks import AttackConfig

    return AttackConfig(
        method="eot" if attack.name == "eot" else "pgd",
        norm=attack.norm,
        eps=attack.eps,
        step_size=attack.step_size,
        steps=attack.steps,
        random_start=attack.random_start,
        seed=attack.seed,
        targeted=targeted,
        eot_samples=attack.eot_samples,
        sigma=spec.eot_sigma(attack),
        noise_space=spec.defense.noise_space,
        universal=attack.name == "universal",
        stop_loss=attack.stop_loss,
    )


def png_roundtrip(image: Image.Image) -> tuple[Image.Image, bytes]:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    data = buf.getvalue()
    return Image.open(io.BytesIO(data)).convert("RGB"), data


def universal_image(
    generator: Any, spec: AuditSpec, base: Image.Image, prompts: list[str], targets: list[str]
) -> tuple[Image.Image, dict[str, Any]]:
    """ONE image optimised over many prompts: towards their targets (targeted, where every prompt
    has one), else away from the answers the model gives on the base image."""
    from shared.attacks import attack_images

    attack = next(a for a in spec.attacks if a.name == "universal")
    targeted = attack.targeted and all(targets)
    if not targeted:
        clean = generator.answer_batch([base] * len(prompts), prompts, max_new_tokens=spec.defense.max_new_tokens)
        targets = [g.text for g in clean]
    result = attack_images(generator, [base], prompts, targets, attack_config(spec, attack, targeted=targeted))
    return result.images[0], _stats(result, 0)


def _stats(result: Any, i: int) -> dict[str, Any]:
    return {
        "loss": float(result.losses[i]),
        "linf": float(result.linf[i]),
        "l2": float(result.l2[i]),
        "steps": int(result.steps),
        "attack_ms": float(result.ms),
    }


def attack_items(
    generator: Any,
    spec: AuditSpec,
    items: list[ChunkItem],
    clean_answers: list[str],
    universal: Image.Image | None,
    done: list[dict[str, Variant]] | None = None,
    on_attack: Progress | None = None,
) -> list[dict[str, Variant]]:
    """Per item: ``{"clean": Variant, "<attack's variant>": Variant, …}`` with PNG-exact images; only the
    clean variant is answered yet (and those in ``done``). Attacks whose variant every item has in
    ``done`` (a run before this one finished them) are not run again; each attack run now is
    handed to ``on_attack`` as it finishes."""
    from shared.attacks import attack_images

    done = done or [{} for _ in items]
    out = [{"clean": Variant(it.image, a)} | d for it, a, d in zip(items, clean_answers, done, strict=True)]
    for attack in spec.attacks:
        if attack.name != "universal" and all(attack.variant in row for row in done):
            continue
        if attack.name == "universal":
            assert universal is not None, "the universal image is made before the chunks"
            for row in out:
                row[attack.variant] = Variant(universal, stats={"shared": True})
            continue
        # targeted where the item has a target; the others pushed away from their clean answer
        groups = {True: [i for i, it in enumerate(items) if attack.targeted and it.target is not None]}
        groups[False] = [i for i in range(len(items)) if i not in groups[True]]
        for targeted, idx in groups.items():
            if not idx:
                continue
            goals = [items[i].target if targeted else clean_answers[i] for i in idx]
            result = attack_images(
                generator,
                [items[i].image for i in idx],
                [items[i].prompt for i in idx],
                [g or "" for g in goals],
                attack_config(spec, attack, targeted=targeted),
            )
            for k, i in enumerate(idx):
                image, png = png_roundtrip(result.images[k])
                out[i][attack.variant] = Variant(
                    image, stats=_stats(result, k) | {"targeted": targeted, "goal": goals[k]}, png=png
                )
        if on_attack is not None:
            on_attack(attack.variant, [row[attack.variant] for row in out])
    return out


def answer_all(generator: Any, items: list[ChunkItem], variants: list[dict[str, Variant]], max_new_tokens: int) -> None:
    """Undefended answers of every (item, variant) not answered yet, in one batched call."""
    pairs = [(v, it.prompt) for it, row in zip(items, variants, strict=True) for v in row.values() if v.answer is None]
    answers = generator.answer_batch([v.image for v, _ in pairs], [p for _, p in pairs], max_new_tokens=max_new_tokens)
    for (v, _), a in zip(pairs, answers, strict=True):
        v.answer = a.text
