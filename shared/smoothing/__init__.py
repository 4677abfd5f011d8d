"""The pure SmoothGuard core: no database, object store or queue imports."""

from shared.smoothing.noise import candidate_seed, plan_round
from shared.smoothing.smoother import SmoothGuard, aggregate, next_step
from shared.smoothing.types import (
    CandidateSpec,
    ClusterSummary,
    Consensus,
    Embedder,
    Generation,
    Generator,
    Sample,
    SmoothConfig,
    SmoothResult,
)

__all__ = [
    "CandidateSpec",
    "ClusterSummary",
    "Consensus",
    "Embedder",
    "Generation",
    "Generator",
    "Sample",
    "SmoothConfig",
    "SmoothGuard",
    "SmoothResult",
    "aggregate",
    "candidate_seed",
    "next_step",
    "plan_round",
]
