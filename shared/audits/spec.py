"""What an audit asks for: a benchmark set, attacks, the defense's σ sweep, a judge.

Pydantic models, validated by the API and read back by the workers from ``audits.spec``.
No torch here: the API process imports this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.jobs.options import CORE_DEFAULTS, SIGMA_MAX, DefenseOptions, MaxNewTokens, Sigma
from shared.smoothing.types import IMAGE_NOISE_SPACES, YES_NO, ImageNoiseSpace, SmoothConfig

AttackName = Literal["pgd", "eot", "universal"]
DatasetFormat = Literal["shapes", "pope", "llava-bench", "mm-safetybench"]
# Benchmark answers are short (a word, yes/no, a refusal's opening), so an audit's defense jobs
# stop at 32 new tokens, not the core's 128: the one default an audit sets differently.
AUDIT_MAX_NEW_TOKENS = 32
# The command line's and the demo's σ sweep: around the paper's σ = 0.1, up to the top of its best range.
SIGMA_SWEEP = (0.05, 0.1, 0.15, 0.2)
CLEAN_VARIANT = "clean"
# attacks per audit: each makes one adversarial image per item, answered at every σ
MAX_ATTACKS = 8


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(Strict):
    """``shapes`` is generated from ``seed``/``count`` (offline); the public formats come from an
    archive uploaded with ``POST /v1/datasets`` and checked ``ready`` (``archive``: its sha256)."""

    format: DatasetFormat = "shapes"
    seed: int = Field(0, ge=0, description="shapes: the set's seed")
    count: int = Field(12, ge=1, le=5000, description="shapes: images (two questions each)")
    archive: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="the sha256 POST /v1/datasets returned")
    options: dict[str, str | int | list[str]] = Field(
        default_factory=dict, description="loader options, e.g. mm-safetybench: scenarios, variant"
    )

    @model_validator(mode="after")
    def _archive_for_public_formats(self) -> DatasetSpec:
        if self.format != "shapes" and self.archive is None:
            raise ValueError(f"dataset format {self.format!r} needs an archive (upload it with POST /v1/datasets)")
        return self


class AttackSpec(Strict):
    """One attack. ε and step size in [0, 1] pixel units (L∞ or L2). ``eot`` averages gradients over
    the defense's own noise (``sigma``, default the sweep's σ nearest the paper's 0.1);
    ``universal`` optimises ONE image over the prompts of the first ``universal_prompts`` items.
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
    eps: float = Field(16 / 255, gt=0, le=1)
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
    job (``shared.jobs.options``), but for images only — the noise space defaults to the image
    default — and with ``AUDIT_MAX_NEW_TOKENS``. Without ``certify`` audits set no closed answer
    set: each item's judge decides what counts as right. With ``certify`` (CERTIFY, an L2 radius
    per defended answer) each item's defense jobs get its closed answer set by kind
    (``answer_set_for``): yes/no items ("yes", "no"), closed items the set's labels; open and
    safety items have none, so their jobs run uncertified (and without ``target_radius``)."""

    sigmas: list[Sigma] = Field(default_factory=lambda: [CORE_DEFAULTS.sigma], min_length=1, max_length=16)
    noise_space: ImageNoiseSpace = Field(IMAGE_NOISE_SPACES[0], description="where the noise goes")
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
        return options.smooth_config(sigma=sigma, noise_space=self.noise_space, answer_set=answer_set)

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

    def eot_sigma(self, attack: AttackSpec) -> float:
        return attack.sigma or min(self.defense.sigmas, key=lambda s: abs(s - CORE_DEFAULTS.sigma))


def ref(variant: str, sigma: float) -> str:
    return f"{variant}@{sigma:g}"
