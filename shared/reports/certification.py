"""Threat models against certificates: the rows' coverage column and the summary's certification
tables (pure; rows in, JSON-serialisable values out).

A row of an attacked variant carries its threat model — ``attack_norm`` (``l2``/``linf``) and
``attack_eps`` — and the perturbation actually made, ``perturbation_l2`` and
``perturbation_linf`` in ``perturbation_units``: ``pixel`` ([0, 1] pixel units, at the resolution
the model sees) or ``waveform`` (amplitude of the clip at the model's sampling rate). A defended
row of a certifying audit carries its job's CERTIFY certificate: ``certified`` (True; False when
it abstained; None when the job did not certify), ``certified_label``, ``certified_radius`` (L2,
σ·Φ⁻¹(p_lower) in ``radius_space`` units) and ``max_radius`` (the most its estimation draws can
certify).

``covered``: the certificate covers the perturbation — certified and radius ≥ ‖δ‖₂. Then, with
probability ≥ 1 − α, the smoothed model gives the certified label on the clean input as well, so
a covered wrong answer means the smoothed model is wrong without the attack too. Radius and
‖δ‖₂ are comparable when they are in the same units: ``pixel`` noise on images, ``waveform``
noise on audio. A ``normalized`` radius is in the processor's ``pixel_values`` units
(per-channel std, resizing), so such rows say "not comparable".
An L∞ attack's ε-ball is far larger in L2 (ε·√d) than any radius smoothing certifies: its rows
say so, with both numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]

CLEAN = "clean"
# Cohen et al.'s certified-accuracy grid (L2 radii in the noise space's units); waveform radii
# (amplitude, σ of 0.02–0.2) are about a fifth of theirs.
RADII = (0.0, 0.125, 0.25, 0.5, 1.0)
RADII_BY_SPACE = {"waveform": (0.0, 0.025, 0.05, 0.1, 0.2)}
NORM_NAMES = {"l2": "L2", "linf": "L∞"}
PERTURBATION_UNITS = {"image": "pixel", "audio": "waveform"}  # what a modality's ‖δ‖ is measured in
UNIT_NAMES = {"pixel": "pixels", "waveform": "waveform amplitude"}


def threat_model(attack: str, norm: str | None, eps: float | None, targeted: bool | None, units: str = "pixel") -> str:
    """One line naming an attack's threat model, e.g. ``pgd: L2 ε=0.25, targeted`` (ε in [0, 1]
    pixels) or ``pgd: L∞ ε=0.02 (waveform amplitude), untargeted``."""
    ball = f"{NORM_NAMES.get(norm or '', norm)} ε={eps:.4g}" if eps is not None else "ε unknown"
    unit = "" if units == "pixel" else f" ({UNIT_NAMES.get(units, units)})"
    aim = "" if targeted is None else (", targeted" if targeted else ", untargeted")
    return f"{attack}: {ball}{unit}{aim}"


def coverage(row: Row) -> tuple[bool | None, str | None]:
    """``covered`` and the ``certificate`` text of a row (see the module docstring); (None, None)
    for an undefended row; ``covered`` None where there is no perturbation to cover (a clean row)
    or no comparable radius."""
    if row["sigma"] is None:
        return None, None
    certified, l2 = row.get("certified"), row.get("perturbation_l2")
    attacked = row["variant"] != CLEAN
    if certified is None:
        return None, "not certified"
    if not certified:
        return (False if attacked else None), "abstained"
    radius = float(row["certified_radius"])
    if not attacked or l2 is None:
        return None, f"certified (r={radius:.3g})"
    units = row.get("perturbation_units") or "pixel"
    if row.get("radius_space") != units:
        space = row.get("radius_space")
        return (
            None,
            f"not comparable (r={radius:.3g} in {space} units, ‖δ‖₂={l2:.3g} in {UNIT_NAMES.get(units, units)})",
        )
    covered = radius >= float(l2)
    relation = f"r={radius:.3g} ≥ ‖δ‖₂={l2:.3g}" if covered else f"r={radius:.3g} < ‖δ‖₂={l2:.3g}"
    if row.get("attack_norm") == "linf":
        eps = row.get("attack_eps")
        ball = f"ε={eps:.3g}" if eps is not None else "ε unknown"
        verdict = "but this perturbation is covered" if covered else "outside what smoothing certifies"
        return covered, f"L∞ attack ({ball}): {verdict} (‖δ‖₂={l2:.3g} vs r={radius:.3g})"
    return covered, f"covers ({relation})" if covered else f"does not cover ({relation})"


def certified_right(row: Row) -> bool:
    """Certified (not abstained), and the certified class is the item's label (ignoring case)."""
    label, chosen = row.get("label"), row.get("certified_label")
    return bool(row.get("certified")) and label is not None and chosen is not None and _same(label, chosen)


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def _certifying(rows: Sequence[Row], variant: str, sigma: float) -> list[Row]:
    return [r for r in rows if r["variant"] == variant and r["sigma"] == sigma and r.get("certified") is not None]


def certified_accuracy(rows: Sequence[Row], sigmas: Sequence[float], radii: Sequence[float] = RADII) -> list[dict]:
    """Cohen et al.'s table per σ: over the clean defended rows whose job certified (abstained
    ones included), the share certified with the right class at a radius ≥ r — for the r of
    ``radii`` up to ``max_radius`` (what the estimation draws allow; none when that is None)."""
    table = []
    for sigma in sigmas:
        group = _certifying(rows, CLEAN, sigma)
        if not group:
            continue
        limits = [float(r["max_radius"]) for r in group if r.get("max_radius") is not None]
        limit = max(limits) if limits else None
        points = [
            {"radius": x, "accuracy": sum(_right_at(r, x) for r in group) / len(group)}
            for x in radii
            if limit is not None and x <= limit + 1e-12
        ]
        abstained = sum(not r["certified"] for r in group) / len(group)
        table.append(
            {"sigma": sigma, "n": len(group), "max_radius": limit, "abstain_rate": abstained, "points": points}
        )
    return table


def _right_at(row: Row, radius: float) -> bool:
    return certified_right(row) and float(row["certified_radius"]) >= radius


def coverage_table(rows: Sequence[Row], attacks: Sequence[str], sigmas: Sequence[float]) -> list[dict]:
    """Per attack and σ, over the defended rows whose job certified: how many were certified, how
    many certificates cover the perturbation, and how many of those commit a wrong class (the
    smoothed model wrong on the clean image too, or the certificate's α failing)."""
    table = []
    for attack in attacks:
        for sigma in sigmas:
            group = _certifying(rows, attack, sigma)
            if not group:
                continue
            covered = [r for r in group if r.get("covered")]
            wrong = [r for r in covered if not certified_right(r)]
            clean = {r["item"]: r for r in _certifying(rows, CLEAN, sigma)}
            table.append(
                {
                    "variant": attack,
                    "sigma": sigma,
                    "norm": group[0].get("attack_norm"),
                    "eps": group[0].get("attack_eps"),
                    "n": len(group),
                    "certified": sum(bool(r["certified"]) for r in group),
                    "covered": len(covered),
                    "covered_wrong": len(wrong),
                    "covered_wrong_clean_too": sum(_same_wrong(r, clean.get(r["item"])) for r in wrong),
                    "mean_perturbation_l2": _mean(r.get("perturbation_l2") for r in group),
                    "mean_certified_radius": _mean(r.get("certified_radius") for r in group),
                }
            )
    return table


def _same_wrong(row: Row, clean: Row | None) -> bool:
    """The clean image's certificate (same item, same σ) names the same wrong class: the smoothed
    model is wrong without the attack too, as the certificate says it must be."""
    if clean is None or not clean.get("certified") or certified_right(clean):
        return False
    return _same(str(clean.get("certified_label")), str(row.get("certified_label")))


def _mean(values: Any) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def radii_for(rows: Sequence[Row]) -> tuple[float, ...]:
    """The certified-accuracy grid of the rows' radius space (Cohen et al.'s unless it has its own)."""
    spaces = {str(r["radius_space"]) for r in rows if r.get("radius_space")}
    return RADII_BY_SPACE.get(spaces.pop(), RADII) if len(spaces) == 1 else RADII


def certification(rows: Sequence[Row], attacks: Sequence[str], sigmas: Sequence[float]) -> dict[str, Any]:
    """The summary's ``certification``: the radius grid, certified accuracy per σ, coverage per
    attack and σ, and ``covered_wrong``: committed wrong answers whose certificate covers their
    perturbation, over all of them (0 unless the model is wrong on the clean images too);
    ``covered_wrong_clean_too``: those whose clean image is certified with the same wrong class
    (what the certificate predicts); the rest would contradict a certificate."""
    table = coverage_table(rows, attacks, sigmas)
    radii = radii_for(rows)
    return {
        "radii": list(radii),
        "accuracy": certified_accuracy(rows, sigmas, radii),
        "coverage": table,
        "covered_wrong": sum(c["covered_wrong"] for c in table),
        "covered_wrong_clean_too": sum(c["covered_wrong_clean_too"] for c in table),
    }
