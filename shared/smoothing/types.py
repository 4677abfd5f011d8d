"""Value types of the smoothing core: configuration, candidate specs, samples and results,
and the one vocabulary of noise spaces.

Noise spaces: ``normalized`` — σ in the units of the processor's ``pixel_values`` (after
mean/std normalisation; the paper's placement); ``pixel`` — σ in [0, 1] pixel units, image
clipped to [0, 1] before processing; ``waveform`` — σ in the units of the raw float waveform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

import numpy as np

Modality = Literal["image", "audio"]
ImageNoiseSpace = Literal["normalized", "pixel"]  # the first is the modality's default (the paper's)
AudioNoiseSpace = Literal["waveform"]
NoiseSpace = Literal[ImageNoiseSpace, AudioNoiseSpace]
ClusteringMethod = Literal["kmeans", "agglomerative"]
StopReason = Literal["fixed", "decided", "futile", "budget"]
NOISE_SPACES: tuple[NoiseSpace, ...] = get_args(NoiseSpace)
IMAGE_NOISE_SPACES: tuple[ImageNoiseSpace, ...] = get_args(ImageNoiseSpace)
NOISE_SPACES_BY_MODALITY: dict[str, tuple[NoiseSpace, ...]] = {
    "image": IMAGE_NOISE_SPACES,
    "audio": get_args(AudioNoiseSpace),
}
CLUSTERING_METHODS: tuple[str, ...] = get_args(ClusteringMethod)
YES_NO: tuple[str, ...] = ("yes", "no")
# model types whose image path robustify can distil (LLaVA family: vision tower + projector)
DISTILLABLE_MODEL_TYPES: tuple[str, ...] = ("llava", "llava_next")
OTHER = "other"


@dataclass(frozen=True)
class SmoothConfig:
    """One defense request. Defaults are the paper's (σ=0.1 normalised, 10 noisy + clean, KMeans k=2).

    With ``adaptive`` the core generates rounds of ``round_size`` noisy candidates and stops as
    soon as the consensus bound decides; ``num_samples`` is then the budget of noisy candidates.
    """

    sigma: float = 0.1
    num_samples: int = 10
    include_clean: bool = True
    noise_space: NoiseSpace = "normalized"
    clustering: ClusteringMethod = "kmeans"
    n_clusters: int = 2
    distance_threshold: float = 0.3
    alpha: float = 0.05
    adaptive: bool = False
    round_size: int = 5
    first_look_share: float = 0.8  # adaptive voting: the share of α spent at the first look (the rest: later looks)
    seed: int = 0
    max_new_tokens: int = 128
    answer_set: tuple[str, ...] | None = None
    match_threshold: float = 0.7
    prefer_refusal: bool = False
    refusal_threshold: float | None = None  # τ: refuse when the refusal share's lower bound reaches it
    certify: bool = False
    certify_n0: int = 16
    target_radius: float | None = None

    def __post_init__(self) -> None:
        _check(self.sigma >= 0, "sigma must be >= 0")
        _check(self.num_samples >= 1, "num_samples must be >= 1")
        _check(self.noise_space in NOISE_SPACES, f"noise_space must be one of {NOISE_SPACES}")
        _check(self.clustering in CLUSTERING_METHODS, f"clustering must be one of {CLUSTERING_METHODS}")
        _check(self.n_clusters >= 2, "n_clusters must be >= 2")
        _check(0 < self.distance_threshold <= 2, "distance_threshold must be in (0, 2]")
        _check(0 < self.alpha < 0.5, "alpha must be in (0, 0.5)")
        _check(self.round_size >= 1, "round_size must be >= 1")
        _check(0 < self.first_look_share < 1, "first_look_share must be in (0, 1)")
        _check(self.max_new_tokens >= 1, "max_new_tokens must be >= 1")
        _check(0 < self.match_threshold <= 1, "match_threshold must be in (0, 1]")
        if self.answer_set is not None:
            _check(len(self.answer_set) >= 2, "answer_set needs at least two answers")
            _check(
                len(set(a.strip().lower() for a in self.answer_set)) == len(self.answer_set),
                "answer_set entries must be distinct",
            )
        _check_certify(self)
        _check_refusal(self)

    @property
    def refusal_aware(self) -> bool:
        """Refusal-aware voting (``shared.smoothing.refusal``): refusals are grouped apart and
        answer when a refusal rule fires; otherwise the compliant majority answers."""
        return self.prefer_refusal or self.refusal_threshold is not None

    @property
    def max_rounds(self) -> int:
        return -(-self.num_samples // self.round_size) if self.adaptive else 1

    def look_alpha(self, look: int) -> float:
        """The level of the bounds at look ``look`` (0-based: after round ``look``). The looks' levels
        add up to α (Bonferroni), so stopping at any look keeps the overall level α. Adaptive voting
        spends ``first_look_share`` of α at the first look — a unanimous first round can decide at
        once — and splits the rest evenly over the later looks; adaptive certification, whose first
        round only selects the class, splits α evenly over all looks."""
        looks = self.max_rounds
        if looks == 1:
            return self.alpha
        if self.certify:
            return self.alpha / looks
        if look == 0:
            return self.alpha * self.first_look_share
        return self.alpha * (1 - self.first_look_share) / (looks - 1)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_certify(config: SmoothConfig) -> None:
    """CERTIFY needs classes (a closed answer set) and noise; a target radius needs adaptive certification."""
    _check(config.certify_n0 >= 1, "certify_n0 must be >= 1")
    if config.certify:
        _check(config.answer_set is not None, "certify needs a closed answer set (answers)")
        _check(config.sigma > 0, "certify needs sigma > 0")
    if config.target_radius is not None:
        _check(config.target_radius > 0, "target_radius must be > 0")
        _check(config.certify and config.adaptive, "target_radius needs certify and adaptive")


def _check_refusal(config: SmoothConfig) -> None:
    """τ is a probability in (0, 1); CERTIFY answers with its certified class, so the refusal
    rules, which choose the answer themselves, do not combine with it."""
    if config.refusal_threshold is not None:
        _check(0 < config.refusal_threshold < 1, "refusal_threshold must be in (0, 1)")
    _check(not (config.certify and config.refusal_aware), "certify does not combine with refusal-aware voting")


def noise_space_for(modality: str, requested: str | None) -> NoiseSpace:
    """The requested noise space if it applies to ``modality``; the modality's default (the
    paper's placement) if none was asked for."""
    allowed = NOISE_SPACES_BY_MODALITY[modality]
    if requested is None:
        return allowed[0]
    for space in allowed:
        if space == requested:
            return space
    raise ValueError(f"noise_space {requested!r} does not apply to {modality}; use one of {list(allowed)}")


@dataclass(frozen=True)
class CandidateSpec:
    """Everything needed to regenerate one candidate's input bit-for-bit (on the same hardware)."""

    index: int
    round: int
    seed: int | None
    sigma: float
    noise_space: NoiseSpace
    is_clean: bool


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int
    generation_ms: float  # wall time of the batched call that produced it, divided by its batch size


@dataclass
class Sample:
    """One candidate with its provenance and, after aggregation, its place in the vote."""

    index: int
    round: int
    seed: int | None
    sigma: float
    noise_space: str
    is_clean: bool
    text: str
    num_tokens: int
    generation_ms: float
    cluster: int | None = None
    cosine_to_centroid: float | None = None
    selected: bool = False
    answer_label: str | None = None

    @classmethod
    def from_generation(cls, spec: CandidateSpec, gen: Generation) -> Sample:
        return cls(
            spec.index,
            spec.round,
            spec.seed,
            spec.sigma,
            spec.noise_space,
            spec.is_clean,
            gen.text,
            gen.num_tokens,
            gen.generation_ms,
        )


@dataclass(frozen=True)
class ClusterSummary:
    cluster: int
    size: int
    noisy_size: int
    representative: int  # index of the member closest to the cluster mean
    text: str
    label: str | None = None  # closed-answer mode: the answer this cluster stands for
    refusal: bool = False


@dataclass(frozen=True)
class Consensus:
    """Majority share among the noisy candidates and its one-sided Clopper–Pearson bounds.

    The clean candidate joins the clustering (as in the paper) but not the counts: only the
    noisy draws are i.i.d. samples of the smoothed classifier.
    """

    count: int
    total: int
    share: float
    lower_bound: float
    upper_bound: float
    alpha: float
    abstained: bool
    certified_radius: float | None = None  # closed-answer mode only: σ·Φ⁻¹(lower_bound)
    radius_space: str | None = None
    certificate: Certificate | None = None  # certify mode: the counts above are its estimation draws


@dataclass(frozen=True)
class Certificate:
    """CERTIFY (Cohen et al., 2019): the class ``label`` chosen from ``n0`` selection draws, its
    count over separate estimation draws, and the L2 radius that count certifies.

    Guarantee: with probability ≥ 1 − ``alpha`` (per look; the looks share the job's α by
    Bonferroni), the smoothed classifier answers ``label`` for every input within ``radius``
    (L2, in ``radius_space`` units: [0, 1] pixels, processor ``pixel_values`` units or waveform
    amplitude) of this one. The clean candidate is never counted.
    """

    label: str | None  # None: no selection draw named an answer of the set
    n0: int  # selection draws
    selection_count: int  # selection draws that answered ``label``
    n: int  # estimation budget (``num_samples``)
    drawn: int  # estimation draws made (< n when adaptive stopped early)
    count: int  # estimation draws that answered ``label``
    p_lower: float  # one-sided Clopper–Pearson lower bound on P(label) at ``alpha``
    alpha: float
    sigma: float
    radius_space: str
    radius: float | None  # σ·Φ⁻¹(p_lower); None (abstain) when p_lower ≤ ½
    max_radius: float | None  # σ·Φ⁻¹(α^(1/n)): what n unanimous estimation draws would certify
    target_radius: float | None
    abstained: bool


@dataclass(frozen=True)
class RefusalVote:
    """Refuse/comply labels and the refusal share of the NOISY candidates with its one-sided
    Clopper–Pearson bounds at ``alpha`` (the clean candidate may be labelled, never counted).

    Guarantee (``threshold`` τ set, ``certified_radius`` not None): with probability ≥ 1 − α the
    smoothed refusal probability stays ≥ τ, so the refusal-aware model keeps refusing, for every
    L2 perturbation smaller than ``certified_radius`` = σ·(Φ⁻¹(lower_bound) − Φ⁻¹(τ)), in
    ``radius_space`` units (normalised ``pixel_values``, [0, 1] pixels or waveform amplitude).
    """

    classifier: str  # the refusal classifier's name
    count: int  # noisy candidates labelled refusing
    total: int  # noisy candidates
    share: float
    lower_bound: float
    upper_bound: float
    alpha: float
    threshold: float | None = None  # τ (``refusal_threshold``); None: the τ rule is off
    refused: bool = False  # a refusal rule fired: the answer is the most central refusal
    certified_radius: float | None = None  # None when lower_bound ≤ τ (or no τ, or σ = 0)
    radius_space: str | None = None
    candidates: tuple[int, ...] = ()  # indices of every candidate labelled refusing (the clean one too)


@dataclass
class Timings:
    generation_ms: float = 0.0
    embedding_ms: float = 0.0
    clustering_ms: float = 0.0


@dataclass
class SmoothResult:
    answer: str
    selected_index: int
    abstained: bool
    consensus: Consensus
    clusters: list[ClusterSummary]
    samples: list[Sample]
    rounds: int
    samples_spent: int
    stop_reason: StopReason
    answer_label: str | None
    generator: str
    embedder: str
    config: dict[str, Any]
    timings: Timings = field(default_factory=Timings)
    refusal: RefusalVote | None = None  # refusal labels, share, bound and decision (always reported)


@dataclass(frozen=True)
class RoundRequest:
    """One job's round in a call shared with other jobs: its input, prompt and candidates."""

    media: Any
    prompt: str
    candidates: Sequence[CandidateSpec]


class Generator(Protocol):
    """An MLLM behind a batch interface: one call, one batch of candidates, one text each."""

    name: str
    modality: Modality
    noise_spaces: tuple[NoiseSpace, ...]

    def generate(
        self, media: Any, prompt: str, candidates: Sequence[CandidateSpec], *, max_new_tokens: int
    ) -> list[Generation]: ...

    def generate_many(self, requests: Sequence[RoundRequest], *, max_new_tokens: int) -> list[list[Generation]]:
        """The rounds of several jobs in as few batched calls as the batch size allows; each
        request's generations in its candidates' order."""
        ...


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32 embeddings."""
        ...
