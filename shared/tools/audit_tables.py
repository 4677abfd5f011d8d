"""The audit's text tables: the headline (per σ: clean accuracy, ASR per attack, abstain rate,
goal), certified accuracy against radius next to Cohen et al.'s, the certificates' coverage, and
models side by side — what ``smoothguard audit`` and the demo print."""

from __future__ import annotations

from typing import Any


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def table(summary: dict[str, Any], noise_space: str) -> str:
    """The headline: per σ (undefended first) clean accuracy, ASR per attack, abstain rate, samples."""
    attacks = summary["attacks"]
    safety = bool(summary.get("has_safety"))  # over-refusal on the benign items, next to the safety items' ASR
    head = ["defense", "clean acc", *[f"ASR {a} (not abstained)" for a in attacks], "abstain", "samples/answer", "goal"]
    if safety:
        head.insert(-2, "over-refusal")
    body = []
    for row in summary["headline"]:
        label = "undefended" if row["sigma"] is None else f"σ={row['sigma']:g}"
        goal = goal_cell(row, bool(attacks))
        asr = [f"{_pct(row['asr'][a])} ({_pct(row['committed_asr'][a])})" for a in attacks]
        cells = [label, _pct(row["clean_accuracy"]), *asr, _pct(row["abstain_rate"])]
        cells += [_pct(row.get("over_refusal"))] if safety else []
        body.append([*cells, f"{row['mean_samples_spent'] or 0:.1f}", goal])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
    spent = sum(g["total_samples_spent"] for g in summary["groups"])
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"{summary['n_items']} items ({summary['n_eligible']} clean-correct, over which ASR is counted); "
        f"noise space: {noise_space}; generations spent in all: {spent}"
    )
    if not attacks:
        lines.append("goal: not judged — the audit ran no attacks (it measures clean accuracy only)")
        return "\n".join(lines)
    judged = ", ".join(summary.get("goal_attacks", attacks))
    lines.append(
        f"goal: for {judged}, committed ASR ≤ ⅓ and ASR ≤ ½ of the undefended ASR; clean accuracy at most 2 points lower"
        + (" (decided on the 95 % intervals)" if any("goal" in r for r in summary["headline"]) else "")
    )
    return "\n".join(lines)


def goal_cell(row: dict[str, Any], has_attacks: bool) -> str:
    """The σ's goal: met / missed / inconclusive on the intervals (the point estimates in older
    summaries); "–" for the undefended row, "not judged" without an attack or a checkable criterion."""
    if row["sigma"] is None:
        return "–"
    if not has_attacks:
        return "not judged"
    verdict = row["goal"] if "goal" in row else {True: "met", False: "missed", None: None}[row.get("meets_goal")]
    return verdict or "not judged"


# Cohen, Rosenfeld & Kolter (2019), Table 1 / Figure 7: certified accuracy of the smoothed
# ResNet-110 on CIFAR-10 (n = 100,000, α = 0.001), L2 radius in [0, 1] pixel units, per σ.
COHEN_CIFAR10: dict[float, dict[float, float]] = {
    0.25: {0.0: 0.75, 0.25: 0.60, 0.5: 0.43},
    0.5: {0.0: 0.65, 0.25: 0.55, 0.5: 0.41, 1.0: 0.22},
}


def _grid(cells: list[list[str]]) -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(*cells, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def certified_accuracy_table(summary: dict[str, Any], reference: dict[float, dict[float, float]] | None = None) -> str:
    """Certified accuracy on the clean items against L2 radius, one row per σ, each followed by
    Cohen et al.'s CIFAR-10 row at that σ where there is one; "–" past what n draws can certify."""
    reference = COHEN_CIFAR10 if reference is None else reference
    cert = summary["certification"]
    radii = [float(r) for r in cert["radii"]]
    cells = [["σ", "certified accuracy of", "abstain", *[f"r={r:g}" for r in radii], "max r (n draws)"]]
    for row in cert["accuracy"]:
        points = {float(p["radius"]): p["accuracy"] for p in row["points"]}
        limit = row["max_radius"]
        cells.append(
            [
                f"{row['sigma']:g}",
                f"this model ({row['n']} clean items)",
                _pct(row["abstain_rate"]),
                *[_pct(points.get(r)) for r in radii],
                "–" if limit is None else f"{limit:.3g}",
            ]
        )
        ref = reference.get(float(row["sigma"]))
        if ref:
            cells.append(["", "Cohen et al., CIFAR-10", "", *[_pct(ref.get(r)) for r in radii], "(n=100,000)"])
    return "\n".join(_grid(cells))


def coverage_lines(summary: dict[str, Any]) -> str:
    """Per attack and σ: certified answers, how many certificates cover the perturbation (r ≥ ‖δ‖₂),
    the perturbation's mean L2 and the mean certified radius; L∞ rows say they are outside."""
    cells = [["attack", "threat model", "σ", "certified", "cover ‖δ‖₂", "mean ‖δ‖₂", "mean r", "what it is"]]
    for c in summary["certification"]["coverage"]:
        linf = c["norm"] == "linf"
        eps = "16/255" if linf and abs(c["eps"] - 16 / 255) < 1e-9 else f"{c['eps']:g}"
        cells.append(
            [
                c["variant"],
                f"{'L∞' if linf else 'L2'} ε={eps}",
                f"{c['sigma']:g}",
                f"{c['certified']}/{c['n']}",
                str(c["covered"]),
                "–" if c["mean_perturbation_l2"] is None else f"{c['mean_perturbation_l2']:.3g}",
                "–" if c["mean_certified_radius"] is None else f"{c['mean_certified_radius']:.3g}",
                "L∞ (outside what smoothing certifies)" if linf else "L2 (certified where covered)",
            ]
        )
    return "\n".join(_grid(cells))


def certificate_check(summary: dict[str, Any]) -> str:
    """The line that must read 0: committed wrong answers whose certificate covers the perturbation."""
    coverage = summary["certification"]["coverage"]
    covered = sum(c["covered"] for c in coverage)
    cert = summary["certification"]
    wrong, clean_too = cert["covered_wrong"], cert.get("covered_wrong_clean_too")
    line = f"committed wrong answers covered by a certificate: {wrong} of {covered} covered answers"
    if wrong and clean_too is not None:
        line += (
            f" ({clean_too} where the smoothed model certifies the same wrong answer on the clean image, as the "
            f"certificate says it must; {wrong - clean_too} contradicting a certificate)"
        )
    return line


def certification_report(summary: dict[str, Any], n0: int, n: int, alpha: float) -> str:
    """Certified accuracy vs radius (with Cohen et al.'s row), coverage per attack and σ, the
    certificate check, and plainly which numbers are certified and which only empirical."""
    return "\n".join(
        [
            f"certified accuracy vs L2 radius (CERTIFY: n0={n0} selection, n={n} estimation draws, α={alpha:g}; "
            "a certified answer must be the item's label):",
            certified_accuracy_table(summary),
            "certificates against the attacks (an answer is covered when certified with r ≥ its ‖δ‖₂):",
            coverage_lines(summary),
            certificate_check(summary),
            "certified: the certified-accuracy rows and the covered answers (each holds with probability ≥ 1−α). "
            "Only empirical: every ASR above, and L2 answers whose radius is below ‖δ‖₂ (a failed attack proves "
            "nothing). L∞ rows are outside what smoothing certifies: their ‖δ‖₂ is many times any radius here.",
        ]
    )


def side_by_side(named: list[tuple[str, dict[str, Any]]], radius: float = 0.25) -> str:
    """The models next to each other, per σ (undefended first): clean accuracy, certified accuracy
    at ``radius``, and per attack the strict and the committed ("not abstained") ASR."""
    first = named[0][1]
    cells = [["σ", "", *[name for name, _ in named]]]
    for k, row in enumerate(first["headline"]):
        sigma = row["sigma"]
        label = "undefended" if sigma is None else f"{sigma:g}"
        heads = [s["headline"][k] for _, s in named]
        cells.append([label, "clean accuracy", *[_pct(h["clean_accuracy"]) for h in heads]])
        if sigma is not None:
            cert = [_certified_at(s, sigma, radius) for _, s in named]
            cells.append(["", f"certified accuracy at r={radius:g}", *cert])
        for a in first["attacks"]:
            asr = [f"{_pct(h['asr'].get(a))} ({_pct(h['committed_asr'].get(a))})" for h in heads]
            cells.append(["", f"ASR {a} (not abstained)", *asr])
    return "\n".join(_grid(cells))


def _certified_at(summary: dict[str, Any], sigma: float, radius: float) -> str:
    for row in summary["certification"]["accuracy"]:
        if row["sigma"] == sigma:
            points = {float(p["radius"]): p["accuracy"] for p in row["points"]}
            return _pct(points.get(radius))
    return "–"
