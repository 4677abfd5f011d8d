"""THE defense options: what a caller may set, with one set of bounds, units and descriptions.
Defaults are the core's (``SmoothConfig``), read from it, never repeated here.

- ``DefenseOptions``: the options every context shares. The audit's ``DefenseSpec``
  (``shared.audits.spec``) is these with a σ sweep.
- ``SingleDefenseOptions``: one defense call — adds one σ and the closed answer set. The API's
  ``JobOptions`` adds the prompt, model and callback to it; ``smoothguard defend``'s flags are
  generated from its fields (``shared.tools.cli``).
- ``to_params`` / ``from_params``: the core's config as the JSON stored in ``jobs.params``, and back.

σ, for jobs and audits alike: 0 ≤ σ ≤ 10, in the units of the noise space (normalised
``pixel_values``, [0, 1] pixels, or waveform amplitude). σ = 0 is the core's noise-free
baseline: every candidate is the clean input.

No torch here: the API process imports this.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from shared.smoothing.types import (
    NOISE_SPACES_BY_MODALITY,
    YES_NO,
    ClusteringMethod,
    NoiseSpace,
    SmoothConfig,
)

CORE_DEFAULTS = SmoothConfig()
SIGMA_MAX = 10.0
MAX_SEED = 2**63 - 1

Sigma = Annotated[
    float,
    Field(
        ge=0,
        le=SIGMA_MAX,
        description="noise std σ in the noise space's units: normalised pixel_values, [0, 1] pixels or waveform "
        "amplitude; 0: no noise",
    ),
]
MaxNewTokens = Annotated[int, Field(ge=1, description="new tokens generated per candidate (greedy)")]
_DEFAULT_SPACES = ", ".join(f"{spaces[0]} for {modality}" for modality, spaces in NOISE_SPACES_BY_MODALITY.items())


class DefenseOptions(BaseModel):
    """The defense's options shared by jobs, audits and the command line."""

    model_config = ConfigDict(extra="forbid")

    num_samples: int = Field(CORE_DEFAULTS.num_samples, ge=1, description="noisy candidates; the budget when adaptive")
    include_clean: bool = Field(CORE_DEFAULTS.include_clean, description="add the clean input as one more candidate")
    noise_space: NoiseSpace | None = Field(None, description=f"where the noise goes; default: {_DEFAULT_SPACES}")
    clustering: ClusteringMethod = Field(CORE_DEFAULTS.clustering, description="how the answers are clustered")
    distance_threshold: float = Field(
        CORE_DEFAULTS.distance_threshold, gt=0, le=2, description="cosine distance for agglomerative clustering"
    )
    adaptive: bool = Field(CORE_DEFAULTS.adaptive, description="sample in rounds, stop once the bound decides")
    round_size: int = Field(CORE_DEFAULTS.round_size, ge=1, description="noisy candidates per round when adaptive")
    alpha: float = Field(CORE_DEFAULTS.alpha, gt=0, lt=0.5, description="level of the consensus bound")
    seed: int = Field(CORE_DEFAULTS.seed, ge=0, le=MAX_SEED, description="seeds every candidate's noise")
    max_new_tokens: MaxNewTokens = CORE_DEFAULTS.max_new_tokens
    prefer_refusal: bool = Field(
        CORE_DEFAULTS.prefer_refusal,
        description="a refuse/comply tie goes to the refusal: answer with the most central refusal unless the "
        "compliant share's Clopper-Pearson lower bound (noisy candidates, at alpha) clears 1/2; with 10 noisy "
        "candidates at alpha=0.05, 2 refusals suffice",
    )
    refusal_threshold: float | None = Field(
        CORE_DEFAULTS.refusal_threshold,
        gt=0,
        lt=1,
        description="tau, e.g. 0.25: answer with the most central refusal when the Clopper-Pearson lower bound of "
        "the noisy candidates' refusal share (at alpha) reaches tau, else from the compliant majority; reports the "
        "refusal radius sigma*(invPhi(p_lower)-invPhi(tau)); default off",
    )
    certify: bool = Field(
        CORE_DEFAULTS.certify,
        description="certify an L2 radius (CERTIFY, Cohen et al. 2019): the answer from certify_n0 selection draws, "
        "its Clopper-Pearson bound from num_samples other draws; needs a closed answer set",
    )
    certify_n0: int = Field(
        CORE_DEFAULTS.certify_n0, ge=1, le=256, description="selection draws when certifying (not in the bound)"
    )
    target_radius: float | None = Field(
        CORE_DEFAULTS.target_radius,
        gt=0,
        description="with certify and adaptive: stop once this L2 radius (noise-space units) is certified",
    )

    def smooth_config(
        self, *, sigma: float, noise_space: NoiseSpace, answer_set: tuple[str, ...] | None = None
    ) -> SmoothConfig:
        """The core's config: these options with ``sigma`` (in ``noise_space``'s units). Raises
        ``ValueError`` for combinations the core rejects."""
        shared = self.model_dump(include=set(DefenseOptions.model_fields) - {"noise_space"})
        return SmoothConfig(**shared, sigma=sigma, noise_space=noise_space, answer_set=answer_set)


MAX_ANSWERS = 32
MAX_ANSWER_CHARS = 200


class SingleDefenseOptions(DefenseOptions):
    """One defense call: one σ and, optionally, a closed answer set (which certifies a radius)."""

    sigma: Sigma = CORE_DEFAULTS.sigma
    # each answer is embedded and matched against every candidate: the set is bounded, like any input
    answers: list[Annotated[str, Field(min_length=1, max_length=MAX_ANSWER_CHARS)]] | None = Field(
        None,
        max_length=MAX_ANSWERS,
        description=f'closed answer set: ["yes", "no"], or "yes-no" / "a,b,c" (at most {MAX_ANSWERS} answers of '
        f"{MAX_ANSWER_CHARS} characters); certifies an L2 radius",
    )

    @field_validator("answers", mode="before")
    @classmethod
    def _answers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return list(YES_NO) if value == "yes-no" else [a.strip() for a in value.split(",") if a.strip()]
        return value

    def config(self, noise_space: NoiseSpace) -> SmoothConfig:
        """The core's config for an input whose modality gave ``noise_space`` (``noise_space_for``)."""
        answers = tuple(self.answers) if self.answers else None
        return self.smooth_config(sigma=self.sigma, noise_space=noise_space, answer_set=answers)


_PARAMS = TypeAdapter(SmoothConfig)


def to_params(config: SmoothConfig) -> dict[str, Any]:
    """The JSON stored in ``jobs.params`` (and hashed for the Idempotency-Key): every field of the
    core's config, the answer set as a list."""
    return _PARAMS.dump_python(config, mode="json")


def from_params(params: dict[str, Any]) -> SmoothConfig:
    """The core's config from ``jobs.params``, every field checked (missing ones: the core's default)."""
    return _PARAMS.validate_python(params)
