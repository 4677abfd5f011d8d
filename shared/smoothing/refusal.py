"""Refusal-aware voting: label every candidate refuse/comply, bound the refusal share of the
NOISY candidates, and refuse when that share is provably large enough.

Let p_R(x) = P(f(x + ε) refuses), ε ~ N(0, σ²I), and let r of the n noisy candidates refuse
(the clean candidate is labelled too but never counted: only the noisy draws are i.i.d.).
p_lower and p_upper are the one-sided (1 − α) Clopper–Pearson bounds on p_R(x), α the job's
level at this look (``SmoothConfig.look_alpha``).

- ``refusal_threshold`` τ: the smoothed model refuses when p_lower ≥ τ, answering with the most
  central refusal, even when refusals are a minority; otherwise it answers from the majority of
  the compliant candidates (the usual clustering, refusals excluded).
  Certificate: Φ⁻¹(p_R) is σ⁻¹-Lipschitz in the input (Salman et al. 2019; Cohen et al. 2019,
  Thm. 1 for τ = ½), so with probability ≥ 1 − α, p_R(x + δ) ≥ τ — the smoothed model still
  refuses — for every ‖δ‖₂ < R = σ·(Φ⁻¹(p_lower) − Φ⁻¹(τ)), in the noise space's units
  (normalised ``pixel_values``, [0, 1] pixels or waveform amplitude); None when p_lower ≤ τ.
- ``prefer_refusal``: a statistical tie between refusing and complying goes to the refusal. The
  model refuses (given at least one refusal) unless a compliant majority is certified, i.e.
  unless the compliant share's lower bound clears ½ — equivalently, it refuses when
  p_upper ≥ ½. With 10 noisy candidates at α = 0.05 two refusals suffice (p_upper = 0.507), one
  does not (0.394).

Both rules may be on; the model then refuses when either fires. The classifier is injected (a
batch of texts in, one flag each out); the core's default is the keyword test ``is_refusal``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.stats import norm

from shared.smoothing.consensus import lower_bound, upper_bound
from shared.smoothing.types import RefusalVote, SmoothConfig

_REFUSAL = re.compile(
    r"\b(i\s+(cannot|can ?not|can't|won't|will not|am unable|'m unable|am not able|must decline)|"
    r"(i'm|i am)\s+sorry|as an ai|cannot (help|assist|comply|provide)|not able to (help|assist))\b",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    """The core's own keyword test: first-person refusal or apology phrases."""
    return bool(_REFUSAL.search(text))


class RefusalClassifier(Protocol):
    """Refuse/comply labels for a batch of answers: one call per vote, one flag per text (True:
    the text declines the request). Deterministic per text, so the labels are a function of the
    noisy input and the bound above applies. ``name`` is reported with the result."""

    @property
    def name(self) -> str: ...

    def __call__(self, texts: Sequence[str]) -> Sequence[bool]: ...


@dataclass(frozen=True)
class KeywordRefusals:
    """A per-text keyword test (default: the core's ``is_refusal``) as a batch classifier."""

    test: Callable[[str], bool] = is_refusal
    name: str = "keywords"

    def __call__(self, texts: Sequence[str]) -> list[bool]:
        return [bool(self.test(t)) for t in texts]


class RefusalCache:
    """Classifies each distinct text once across rounds (answers repeat; a judge model is costly)."""

    def __init__(self, classifier: RefusalClassifier):
        self.classifier = classifier
        self.name = classifier.name
        self._cache: dict[str, bool] = {}

    def __call__(self, texts: Sequence[str]) -> list[bool]:
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if new:
            flags = list(self.classifier(new))
            if len(flags) != len(new):
                raise ValueError(f"refusal classifier {self.name} gave {len(flags)} labels for {len(new)} texts")
            self._cache.update(zip(new, map(bool, flags), strict=True))
        return [self._cache[t] for t in texts]


def refusal_radius(sigma: float, p_lower: float, tau: float) -> float | None:
    """L2 radius σ·(Φ⁻¹(p_lower) − Φ⁻¹(τ)) in the noise space's units within which the refusal
    probability provably stays ≥ τ (at the bound's level); None when p_lower ≤ τ or σ = 0."""
    if p_lower <= tau or sigma <= 0:
        return None
    return float(sigma * (norm.ppf(p_lower) - norm.ppf(tau)))


def should_refuse(count: int, total: int, config: SmoothConfig, alpha: float) -> bool:
    """The refusal rules (module docstring) on ``count`` refusing of ``total`` noisy candidates."""
    if count == 0 or total == 0:
        return False
    by_threshold = config.refusal_threshold is not None and lower_bound(count, total, alpha) >= config.refusal_threshold
    by_tie = config.prefer_refusal and upper_bound(count, total, alpha) >= 0.5
    return by_threshold or by_tie


def refusal_vote(
    flags: Sequence[bool],
    noisy: np.ndarray,
    indices: Sequence[int],
    config: SmoothConfig,
    classifier: str,
    alpha: float,
) -> RefusalVote:
    """The refusal share of the noisy candidates (``noisy``: bool mask ``[n]``), its bounds at level
    ``alpha``, the decision and, with a threshold τ, the certified radius. ``indices``: the
    candidates' indices."""
    refusing = np.asarray(flags, dtype=bool)
    count, total = int((refusing & noisy).sum()), int(noisy.sum())
    lo = lower_bound(count, total, alpha) if total else 0.0
    tau = config.refusal_threshold
    radius = refusal_radius(config.sigma, lo, tau) if tau is not None else None
    return RefusalVote(
        classifier=classifier,
        count=count,
        total=total,
        share=count / total if total else 0.0,
        lower_bound=lo,
        upper_bound=upper_bound(count, total, alpha) if total else 1.0,
        alpha=alpha,
        threshold=tau,
        refused=should_refuse(count, total, config, alpha),
        certified_radius=radius,
        radius_space=config.noise_space if radius is not None else None,
        candidates=tuple(int(indices[i]) for i in np.flatnonzero(refusing).tolist()),
    )
