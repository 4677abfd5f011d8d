"""CERTIFY (Cohen, Rosenfeld & Kolter, 2019) for a closed answer set, with separate draws.

Selection: the class ĉ_A is the answer given most often by the ``certify_n0`` selection draws
(round 0; ties: the set's order). Estimation: its count k among the ``num_samples`` estimation
draws (rounds 1…, other indices and so other seeds); ``p_lower`` is the one-sided
Clopper–Pearson lower bound of P(ĉ_A) at α. Theorem 1 of Cohen et al.: with probability
≥ 1 − α the smoothed classifier answers ĉ_A for every input within L2 radius
R = σ·Φ⁻¹(p_lower) of this one, in the noise space's units ([0, 1] pixels for ``pixel``,
processor ``pixel_values`` units for ``normalized``, amplitude for ``waveform``); it abstains
when p_lower ≤ ½. Choosing ĉ_A on draws that are not counted keeps the bound honest, and the
clean candidate (the attacker's input itself) counts in neither set.

Adaptive certification looks after every estimation round at α / looks (Bonferroni, as the
adaptive consensus does), so stopping early keeps the level α: ``decided`` once the target
radius (or, without one, any radius) is certified, ``futile`` once the budget can no longer
reach it, ``budget`` when the draws are spent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from shared.smoothing.consensus import certified_radius, consensus, lower_bound, upper_bound
from shared.smoothing.types import Certificate, Consensus, Sample, SmoothConfig, SmoothResult, StopReason


def max_radius(sigma: float, n: int, alpha: float) -> float | None:
    """The largest radius n estimation draws can certify at level α: all n agree, p_lower = α^(1/n),
    R = σ·Φ⁻¹(α^(1/n)); None when even that does not clear ½ (n too small for α)."""
    return certified_radius(sigma, alpha ** (1 / n))


def selection(samples: list[Sample], answer_set: tuple[str, ...]) -> tuple[str | None, int]:
    """ĉ_A and its count among the noisy round-0 draws; (None, 0) when none named an answer."""
    counts = Counter(s.answer_label for s in samples if s.round == 0 and not s.is_clean)
    best = max(answer_set, key=lambda a: counts[a])  # max keeps the first of the set on ties
    return (best, counts[best]) if counts[best] else (None, 0)


def estimation(samples: list[Sample], label: str | None) -> tuple[int, int]:
    """(count of ``label``, draws) among the noisy draws of rounds ≥ 1; never the clean candidate."""
    drawn = [s for s in samples if s.round >= 1 and not s.is_clean]
    return sum(s.answer_label == label for s in drawn if label is not None), len(drawn)


def certify(samples: list[Sample], config: SmoothConfig) -> Certificate:
    """The certificate of the labelled ``samples`` so far (``answer_label`` set by the vote)."""
    assert config.answer_set is not None, "certify needs a closed answer set"
    label, chosen = selection(samples, config.answer_set)
    count, drawn = estimation(samples, label)
    alpha = config.look_alpha(0)  # certification splits α evenly: every look's level is the same
    p_lower = lower_bound(count, drawn, alpha) if drawn else 0.0
    radius = certified_radius(config.sigma, p_lower)
    return Certificate(
        label=label,
        n0=config.certify_n0,
        selection_count=chosen,
        n=config.num_samples,
        drawn=drawn,
        count=count,
        p_lower=p_lower,
        alpha=alpha,
        sigma=config.sigma,
        radius_space=config.noise_space,
        radius=radius,
        max_radius=max_radius(config.sigma, config.num_samples, alpha),
        target_radius=config.target_radius,
        abstained=radius is None,
    )


def certified_consensus(cert: Certificate) -> Consensus:
    """The consensus a certificate reports: its estimation counts and bounds, its radius."""
    sigma = cert.sigma if cert.label is not None else None
    base = consensus(cert.count, cert.drawn, cert.alpha, sigma=sigma, space=cert.radius_space)
    return replace(base, certificate=cert)


def apply_certificate(result: SmoothResult, config: SmoothConfig) -> None:
    """Certify mode: the result's consensus, abstention and answer become the certificate's —
    the answer is ĉ_A's member closest to its cluster mean (the vote's answer if none was chosen)."""
    cert = certify(result.samples, config)
    result.consensus = certified_consensus(cert)
    result.abstained = cert.abstained
    members = [i for i, s in enumerate(result.samples) if cert.label is not None and s.answer_label == cert.label]
    if not members:
        return
    chosen = max(members, key=lambda i: result.samples[i].cosine_to_centroid or 0.0)  # first on ties
    for i, s in enumerate(result.samples):
        s.selected = i == chosen
    result.answer = result.samples[chosen].text
    result.selected_index = result.samples[chosen].index
    result.answer_label = cert.label


def reaches_target(sigma: float, p: float, target: float | None) -> bool:
    """Whether a lower bound ``p`` certifies the target radius (without one: any radius)."""
    radius = certified_radius(sigma, p)
    return radius is not None and radius >= (target or 0.0)


def certify_stop(cert: Certificate, config: SmoothConfig) -> StopReason | None:
    """None to draw another estimation round; otherwise why certification ends: ``fixed`` (all
    n drawn, not adaptive), ``decided`` (target certified), ``budget`` (n spent), ``futile``
    (no class chosen, or even unanimous remaining draws, or the upper bound, cannot reach it)."""
    remaining = config.num_samples - cert.drawn
    k, n, alpha, target = cert.count, cert.drawn, cert.alpha, config.target_radius
    if config.adaptive and n and reaches_target(cert.sigma, cert.p_lower, target):
        return "decided"
    if remaining <= 0:
        return "budget" if config.adaptive else "fixed"
    best = lower_bound(k + remaining, n + remaining, alpha)  # every remaining draw answers ĉ_A
    if cert.label is None or not reaches_target(cert.sigma, best, target):
        return "futile"
    if config.adaptive and n and not reaches_target(cert.sigma, upper_bound(k, n, alpha), target):
        return "futile"
    return None
