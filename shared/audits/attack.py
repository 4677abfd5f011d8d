"""The GPU half of an audit chunk: attack a batch of items and answer every variant undefended.

Attacks run batched over the chunk (``shared.attacks``); the undefended answers of all variants
of all items come from ONE batched ``answer_batch`` (chunked only by the generator's batch size).
Adversarial images are quantised to 8 bits and answered as the PNG the defense jobs will read;
adversarial clips are stored as 32-bit float WAV at the model's sampling rate, exactly as attacked.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from PIL import Image

from shared.audits.spec import AttackSpec, AuditSpec
from shared.media.decode import Waveform, load_audio, load_image

Media = Image.Image | Waveform


@dataclass
class ChunkItem:
    prompt: str
    media: Media
    target: str | None


@dataclass
class Variant:
    """One image or clip an item is answered on; ``data`` holds a new adversarial one's encoded
    bytes until it is stored as ``media_id`` (the clean and the universal image are stored already)."""

    media: Media
    answer: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    media_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Codec:
    """How one modality's variants are read from and written to the object store: ``encode``
    returns the media exactly as a defense job will decode it, and its bytes."""

    modality: str
    content_type: str
    load: Callable[[bytes], Any]
    encode: Callable[[Any], tuple[Any, bytes]]


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
        noise_space=spec.noise_space,
        universal=attack.name == "universal",
        stop_loss=attack.stop_loss,
    )


def png_roundtrip(image: Image.Image) -> tuple[Image.Image, bytes]:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    data = buf.getvalue()
    return Image.open(io.BytesIO(data)).convert("RGB"), data


def wav_roundtrip(wave: Waveform) -> tuple[Waveform, bytes]:
    """The clip as 32-bit float WAV (lossless: the stored clip is the attacked one) and back."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave.samples.astype(np.float32), wave.sample_rate, format="WAV", subtype="FLOAT")
    data = buf.getvalue()
    return load_audio(data), data


CODECS = {
    "image": Codec("image", "image/png", load_image, png_roundtrip),
    "audio": Codec("audio", "audio/wav", load_audio, wav_roundtrip),
}


def codec_of(media: Media) -> Codec:
    return CODECS["audio" if isinstance(media, Waveform) else "image"]


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


def run_attack(
    generator: Any, media: list[Media], prompts: list[str], goals: list[str], config: Any
) -> tuple[list[Media], Any]:
    """The batched attack of the media's modality: the adversarial media, and the attack's result."""
    import shared.attacks

    if isinstance(media[0], Waveform):  # a chunk is of one modality
        heard = shared.attacks.attack_audio(generator, cast(list[Waveform], media), prompts, goals, config)
        return [Waveform(w, heard.sample_rate) for w in heard.waves], heard
    seen = shared.attacks.attack_images(generator, cast(list[Image.Image], media), prompts, goals, config)
    return list(seen.images), seen


def attack_items(
    generator: Any,
    spec: AuditSpec,
    items: list[ChunkItem],
    clean_answers: list[str],
    universal: Image.Image | None,
    done: list[dict[str, Variant]] | None = None,
    on_attack: Progress | None = None,
) -> list[dict[str, Variant]]:
    """Per item: ``{"clean": Variant, "<attack's variant>": Variant, …}`` with the media exactly as
    stored; only the clean variant is answered yet (and those in ``done``). Attacks whose variant
    every item has in ``done`` (a run before this one finished them) are not run again; each attack
    run now is handed to ``on_attack`` as it finishes."""
    done = done or [{} for _ in items]
    out = [{"clean": Variant(it.media, a)} | d for it, a, d in zip(items, clean_answers, done, strict=True)]
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
            if idx:
                goals = [items[i].target if targeted else clean_answers[i] for i in idx]
                attack_group(generator, spec, attack, items, idx, [g or "" for g in goals], targeted, out)
        if on_attack is not None:
            on_attack(attack.variant, [row[attack.variant] for row in out])
    return out


def attack_group(
    generator: Any,
    spec: AuditSpec,
    attack: AttackSpec,
    items: list[ChunkItem],
    idx: list[int],
    goals: list[str],
    targeted: bool,
    out: list[dict[str, Variant]],
) -> None:
    """One attack on the items ``idx`` (all targeted, or all not), batched; each item's variant
    goes into ``out``, its media as it will be stored."""
    config = attack_config(spec, attack, targeted=targeted)
    made, result = run_attack(generator, [items[i].media for i in idx], [items[i].prompt for i in idx], goals, config)
    for k, i in enumerate(idx):
        media, data = codec_of(items[i].media).encode(made[k])
        stats = _stats(result, k) | {"targeted": targeted, "goal": goals[k]}
        out[i][attack.variant] = Variant(media, stats=stats, data=data)


def answer_all(generator: Any, items: list[ChunkItem], variants: list[dict[str, Variant]], max_new_tokens: int) -> None:
    """Undefended answers of every (item, variant) not answered yet, in one batched call."""
    pairs = [(v, it.prompt) for it, row in zip(items, variants, strict=True) for v in row.values() if v.answer is None]
    answers = generator.answer_batch([v.media for v, _ in pairs], [p for _, p in pairs], max_new_tokens=max_new_tokens)
    for (v, _), a in zip(pairs, answers, strict=True):
        v.answer = a.text
