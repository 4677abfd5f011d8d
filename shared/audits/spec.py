"""What an audit asks for: a benchmark set, attacks, the defense's σ sweep, a judge.

Pydantic models, validated by the API and read back by the workers from ``audits.spec``.
No torch here: the API process imports this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.jobs.options import CORE_DEFAULTS, SIGMA_MAX, DefenseOptions, MaxNewTokens, Sigma
from shared.smoothing.types import IMAGE_NOISE_SPACES, YES_NO, NoiseSpace, SmoothConfig, noise_space_for

AttackName = Literal["pgd", "eot", "universal"]
DatasetFormat = Literal["shapes", "tones", "pope", "llava-bench", "mm-safetybench", "audio-jsonl"]
QUESTIONS_PER_ITEM = {"shapes": 2, "tones": 3}  # a generated set's questions per image / clip
GENERATED_FORMATS = tuple(QUESTIONS_PER_ITEM)  # made from seed/count, never uploaded
AUDIO_FORMATS = ("tones", "audio-jsonl")  # audio clips: an audio model, waveform noise and attacks
# Benchmark answers are short (a word, yes/no, a refusal's opening), so an audit's defense jobs
# stop at 32 new tokens, not the core's 128: the one default an audit sets differently.
AUDIT_MAX_NEW_TOKENS = 32
# The command line's and the demo's σ sweep: around the paper's σ = 0.1, up to the top of its best range.
SIGMA_SWEEP = (0.05, 0.1, 0.15, 0.2)
# Audio, in waveform amplitude (clips lie in [−1, 1]; a tone set's beeps peak near 0.2–0.6): the
# sweep from the L∞ attack's ε to ten times it; σ above 1 buries any clip.
AUDIO_SIGMA_SWEEP = (0.02, 0.05, 0.1, 0.2)
AUDIO_SIGMA_MAX = 1.0
# Audio attacks' ε when none is given, and the most accepted, per norm (waveform amplitude): L∞ 0.02
# is ~23 dB below a 0.3-amplitude beep; L2 1.0 over a 2 s clip at 16 kHz is an RMS of 0.0056.
AUDIO_EPS = {"linf": 0.02, "l2": 1.0}
AUDIO_EPS_MAX = {"linf": 0.1, "l2": 10.0}
# (shared.reports.certification names them too; importing it here would load the report libraries)
NORM_NAMES = {"linf": "L∞", "l2": "L2"}
IMAGE_EPS_MAX = 1.0  # [0, 1] pixel units, either norm
CLEAN_VARIANT = "clean"
# attacks per audit: each makes one adversarial image per item, answered at every σ
MAX_ATTACKS = 8


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(Strict):
    """``shapes`` (images) and ``tones`` (audio clips) are generated from ``seed``/``count``
    (offline); the other formats come from an archive uploaded with ``POST /v1/datasets`` and
    checked ``ready`` (``archive``: its sha256) — ``audio-jsonl`` is the tones set's layout with
    your own clips."""

    format: DatasetFormat = "shapes"
    seed: int = Field(0, ge=0, description="shapes, tones: the set's seed")
    count: int = Field(
        12, ge=1, le=5000, description="shapes: images (two questions each); tones: clips (three questions each)"
    )
    archive: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="the sha256 POST /v1/datasets returned")
    options: dict[str, str | int | list[str]] = Field(
        default_factory=dict, description="loader options, e.g. mm-safetybench: scenarios, variant"
    )

    @model_validator(mode="after")
    def _archive_for_public_formats(self) -> DatasetSpec:
        if self.format not in GENERATED_FORMATS and self.archive is None:
            raise ValueError(f"dataset format {self.format!r} needs an archive (upload it with POST /v1/datasets)")
        return self

    @property
    def modality(self) -> str:
        """What the set's items are: ``audio`` clips or ``image`` files."""
        return "audio" if self.format in AUDIO_FORMATS else "image"

    @property
    def generated_items(self) -> int | None:
        """The questions a generated set has (None for an uploaded archive)."""
        per = QUESTIONS_PER_ITEM.get(self.format)
        return None if per is None else per * self.count


class AttackSpec(Strict):
    """One attack. ε and step size in [0, 1] pixel units (L∞ or L2) for images, in waveform
    amplitude for audio (default ε: ``AUDIO_EPS`` by norm). ``eot`` averages gradients over
    the defense's own noise (``sigma``, default the sweep's σ nearest the paper's 0.1);
    ``universal`` optimises ONE image over the prompts of the first ``universal_prompts`` items
    (images only).
    ``label`` names the variant the attack makes (default: ``name``), so one audit can run one
    method twice, e.g. PGD in L2 and in L∞: outputs, refs, report rows and summary use it."""

    name: AttackName
    label: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$",
        description="the variant's name in outputs and the report (default: name); unique per audit",
    )
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(
        16 / 255,
        gt=0,
        le=AUDIO_EPS_MAX["l2"],
        description=f"images: [0, 1] pixels, at most {IMAGE_EPS_MAX:g}; audio: waveform amplitude, "
        f"L∞ at most {AUDIO_EPS_MAX['linf']:g}, L2 at most {AUDIO_EPS_MAX['l2']:g} (default by norm: "
        f"{AUDIO_EPS['linf']:g}, {AUDIO_EPS['l2']:g})",
    )
    step_size: float | None = Field(None, gt=0, le=1)
    steps: int = Field(40, ge=1, le=1000)
    random_start: bool = True
    targeted: bool = True
    eot_samples: int = Field(8, ge=1, le=64)
    sigma: float | None = Field(None, gt=0, le=SIGMA_MAX, description="EOT's σ (> 0); default: from the sweep")
    stop_loss: float | None = Field(
        None, gt=0, description="stop an item once its target loss passes this (ln 2: the target just became likely)"
    )
    universal_prompts: int = Field(16, ge=1, le=256)
    seed: int = Field(0, ge=0)

    @property
    def variant(self) -> str:
        """The variant this attack's images are stored and reported under."""
        return self.label or self.name


class DefenseSpec(DefenseOptions):
    """SmoothGuard at each σ of ``sigmas``; the other options (bounds, defaults) those of a defense
    job (``shared.jobs.options``) — the noise space, as for a job, the modality's default unless
    given (the audit sets it from its dataset; alone, a DefenseSpec is for images) — and with
    ``AUDIT_MAX_NEW_TOKENS``. Without ``certify`` audits set no closed answer
    set: each item's judge decides what counts as right. With ``certify`` (CERTIFY, an L2 radius
    per defended answer) each item's defense jobs get its closed answer set by kind
    (``answer_set_for``): yes/no items ("yes", "no"), closed items the set's labels; open and
    safety items have none, so their jobs run uncertified (and without ``target_radius``)."""

    sigmas: list[Sigma] = Field(default_factory=lambda: [CORE_DEFAULTS.sigma], min_length=1, max_length=16)
    max_new_tokens: MaxNewTokens = AUDIT_MAX_NEW_TOKENS

    @field_validator("sigmas")
    @classmethod
    def _sorted_distinct(cls, v: list[float]) -> list[float]:
        return sorted(set(v))

    @model_validator(mode="after")
    def _core_accepts(self) -> DefenseSpec:
        """Refuse at submit what the core would refuse later, for items with and without an answer
        set (certify with σ = 0, or with refusal-aware voting; ``target_radius`` without ``adaptive``)."""
        for sigma in self.sigmas:
            self.config(sigma)
            if self.certify:
                self.config(sigma, YES_NO)
        return self

    def config(self, sigma: float, answer_set: tuple[str, ...] | None = None) -> SmoothConfig:
        """The core's config of the defense job at ``sigma`` (one of ``sigmas``) for an item whose
        closed answer set is ``answer_set`` (``answer_set_for``); without one, certify is off."""
        options = self if answer_set else self.model_copy(update={"certify": False, "target_radius": None})
        noise_space = self.noise_space or IMAGE_NOISE_SPACES[0]
        return options.smooth_config(sigma=sigma, noise_space=noise_space, answer_set=answer_set)

    def answer_set(self, kind: str, closed_labels: Sequence[str]) -> tuple[str, ...] | None:
        """The answer set an item's defense jobs get: its kind's when certifying, else none."""
        return answer_set_for(kind, closed_labels) if self.certify else None


def answer_set_for(kind: str, closed_labels: Sequence[str]) -> tuple[str, ...] | None:
    """An item's closed answer set by its kind: ("yes", "no") for yes/no items; for closed items
    the labels of the set's closed items (``closed_labels``; distinct ignoring case, sorted), when
    there are at least two; None for open and safety items (no classes to certify)."""
    if kind == "yes_no":
        return YES_NO
    if kind != "closed":
        return None
    distinct: dict[str, str] = {}
    for label in sorted(x.strip() for x in closed_labels if x.strip()):
        distinct.setdefault(label.lower(), label)  # the core refuses entries equal but for case
    labels = tuple(sorted(distinct.values()))
    return labels if len(labels) >= 2 else None


class AuditSpec(Strict):
    dataset: DatasetSpec = Field(default_factory=lambda: DatasetSpec.model_validate({}))
    limit: int | None = Field(None, ge=1, description="the first N items of the set")
    model: str | None = Field(None, description="a known model id; default: the service's model")
    attacks: list[AttackSpec] = Field(
        default_factory=lambda: [AttackSpec.model_validate({"name": "pgd"})], max_length=MAX_ATTACKS
    )
    defense: DefenseSpec = Field(default_factory=lambda: DefenseSpec.model_validate({}))
    judge: str | None = Field(None, description="match | refusal | similarity | llm:<model>; default by item kind")
    chunk_size: int = Field(8, ge=1, le=256, description="items attacked together in one batched attack")
    concurrency: int = Field(2, ge=1, le=64, description="chunks in flight at once (attack + their defense jobs)")
    callback_url: str | None = Field(None, max_length=2000)

    @field_validator("attacks")
    @classmethod
    def _distinct(cls, v: list[AttackSpec]) -> list[AttackSpec]:
        variants = [a.variant for a in v]
        if len(set(variants)) != len(v):
            raise ValueError("each attack at most once (give repeated methods distinct labels)")
        if CLEAN_VARIANT in variants:
            raise ValueError(f"{CLEAN_VARIANT!r} is the clean image's variant, not an attack label")
        if sum(a.name == "universal" for a in v) > 1:
            raise ValueError("at most one universal attack (its image is made once per audit)")
        return v

    @model_validator(mode="after")
    def _fits_the_modality(self) -> AuditSpec:
        """The dataset's modality's noise space (its default unless given), an audio audit's ε by
        norm where none was given, then each modality's bounds (``fits_modality``)."""
        try:
            self.defense.noise_space = noise_space_for(self.dataset.modality, self.defense.noise_space)
        except ValueError as exc:
            raise ValueError(f"defense.{exc} (the {self.dataset.format} set is {self.dataset.modality})") from exc
        if self.dataset.modality == "audio":
            for attack in self.attacks:
                if "eps" not in attack.model_fields_set:
                    attack.eps = AUDIO_EPS[attack.norm]
        fits_modality(self)
        return self

    @field_validator("judge")
    @classmethod
    def _known_judge(cls, v: str | None) -> str | None:
        from shared.benchmarks.judges import KNOWN_JUDGES, is_known_judge

        if v is not None and not is_known_judge(v):
            raise ValueError(f"unknown judge {v!r}; known: {', '.join(KNOWN_JUDGES)}")
        return v

    def variants(self) -> list[str]:
        """What gets answered per item: the clean image, then one adversarial image per attack."""
        return [CLEAN_VARIANT, *(a.variant for a in self.attacks)]

    def refs(self) -> list[str]:
        """One defense job per item for each of these: ``<variant>@<sigma>``."""
        return [ref(v, s) for v in self.variants() for s in self.defense.sigmas]

    @property
    def noise_space(self) -> NoiseSpace:
        """Where the defense's (and EOT's) noise goes: the dataset's modality's unless given."""
        return noise_space_for(self.dataset.modality, self.defense.noise_space)

    def eot_sigma(self, attack: AttackSpec) -> float:
        return attack.sigma or min(self.defense.sigmas, key=lambda s: abs(s - CORE_DEFAULTS.sigma))


def ref(variant: str, sigma: float) -> str:
    return f"{variant}@{sigma:g}"


def fits_modality(spec: AuditSpec) -> None:
    """The attacks' ε within the dataset's modality's bounds; audio audits take no universal
    attack and σ (the sweep's and EOT's) at most ``AUDIO_SIGMA_MAX``."""
    modality = spec.dataset.modality
    for i, attack in enumerate(spec.attacks):
        _check_attack(f"attacks[{i}]", attack, modality)
    if modality == "audio" and max(spec.defense.sigmas) > AUDIO_SIGMA_MAX:
        raise ValueError(f"defense.sigmas: waveform σ at most {AUDIO_SIGMA_MAX:g} (amplitude; clips lie in [-1, 1])")


def _check_attack(where: str, attack: AttackSpec, modality: str) -> None:
    if modality == "image":
        if attack.eps > IMAGE_EPS_MAX:
            raise ValueError(f"{where}.eps: at most {IMAGE_EPS_MAX:g} for images ([0, 1] pixels), got {attack.eps:g}")
        return
    if attack.name == "universal":
        raise ValueError(f"{where}: no universal attack on audio (it makes one image for every prompt); use pgd or eot")
    bound = AUDIO_EPS_MAX[attack.norm]
    if attack.eps > bound:
        raise ValueError(
            f"{where}.eps: an audio {NORM_NAMES[attack.norm]} ε is in waveform amplitude (clips lie in [-1, 1]); "
            f"at most {bound:g}, got {attack.eps:g}"
        )
    if attack.sigma is not None and attack.sigma > AUDIO_SIGMA_MAX:
        raise ValueError(f"{where}.sigma: waveform σ at most {AUDIO_SIGMA_MAX:g}, got {attack.sigma:g}")
