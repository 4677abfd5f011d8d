"""The pure SmoothGuard core: no database, object store or queue imports.

Names resolve lazily, so importing a light part (types, seeds, round plans) does not load
torch or scikit-learn — the API process imports ``shared.smoothing.types`` and never torch."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "candidate_seed": "noise",
    "plan_round": "noise",
    "SmoothGuard": "smoother",
    "next_step": "smoother",  # aggregate(): import shared.smoothing.smoother
    "CandidateSpec": "types",
    "ClusterSummary": "types",
    "Consensus": "types",
    "Embedder": "types",
    "Generation": "types",
    "Generator": "types",
    "Sample": "types",
    "SmoothConfig": "types",
    "SmoothResult": "types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'shared.smoothing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"shared.smoothing.{_EXPORTS[name]}"), name)
