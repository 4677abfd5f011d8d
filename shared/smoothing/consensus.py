"""Confidence bounds on the majority share, abstention and the certified radius.

PREDICT (Cohen et al., 2019): with ``k`` of ``n`` noisy samples in the majority, abstain unless
the one-sided Clopper–Pearson lower bound at level α clears ½. For a closed answer set without
``certify`` the consensus also reports ``σ·Φ⁻¹(p_lower)`` (L2, noise-space units) — an estimate:
the draws that chose the majority also bound it. The certificate proper, with separate selection
and estimation draws (CERTIFY), is ``shared.smoothing.certify``.
"""

from __future__ import annotations

from scipy.stats import beta, norm

from shared.smoothing.types import Consensus


def lower_bound(k: int, n: int, alpha: float) -> float:
    """One-sided (1-α) Clopper–Pearson lower bound on a binomial proportion."""
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


def upper_bound(k: int, n: int, alpha: float) -> float:
    return 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))


def certified_radius(sigma: float, p_lower: float) -> float | None:
    """L2 radius σ·Φ⁻¹(p_lower), or None when p_lower does not clear ½."""
    return float(sigma * norm.ppf(p_lower)) if p_lower > 0.5 else None


def consensus(k: int, n: int, alpha: float, *, sigma: float | None = None, space: str | None = None) -> Consensus:
    """Consensus of ``k`` majority votes out of ``n`` noisy samples; ``sigma`` set → certify a radius."""
    lo = lower_bound(k, n, alpha) if n else 0.0
    hi = upper_bound(k, n, alpha) if n else 1.0
    radius = certified_radius(sigma, lo) if sigma is not None and sigma > 0 else None
    return Consensus(
        count=k,
        total=n,
        share=k / n if n else 0.0,
        lower_bound=lo,
        upper_bound=hi,
        alpha=alpha,
        abstained=lo <= 0.5,
        certified_radius=radius,
        radius_space=space if radius is not None else None,
    )


def stop_reason(k: int, n: int, remaining: int, alpha: float) -> str | None:
    """Why an adaptive run can stop now, or None to keep sampling.

    ``decided``: the bound already clears ½. ``futile``: even if every remaining sample joined
    the majority the bound could not clear ½, or the upper bound is already below ½.
    """
    if lower_bound(k, n, alpha) > 0.5:
        return "decided"
    if remaining <= 0:
        return "budget"
    if lower_bound(k + remaining, n + remaining, alpha) <= 0.5 or upper_bound(k, n, alpha) < 0.5:
        return "futile"
    return None
