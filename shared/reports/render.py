"""Audit report files: report.json, items.csv, items.jsonl and one self-contained report.html
(pure; bytes out).

The HTML loads nothing from outside: inline CSS, inline SVG, thumbnails and audio clips as data:
URIs (an audio audit's clips in ``<audio controls>`` elements, playable without the script) and one
inline script, the only one its Content-Security-Policy allows (by hash), which fills the items
table from a JSON data block with ``textContent`` — untrusted prompts and answers cannot run code.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from html import escape
from typing import Any

from shared.reports.certification import NORM_NAMES, PERTURBATION_UNITS, UNIT_NAMES
from shared.reports.compare import compare, compare_html
from shared.reports.html import num, num_cell, pct, sigma_text, table
from shared.reports.interactive import SCRIPT_HASH, items_section
from shared.reports.svg import Series, histogram_panels, line_chart

FIELDS = (
    "item",
    "category",
    "kind",
    "prompt",
    "label",
    "target",
    "variant",
    "sigma",
    "noise_space",
    "answer",
    "abstained",
    "consensus_share",
    "consensus_count",
    "consensus_total",
    "consensus_lower",
    "consensus_upper",
    "stop_reason",
    "samples_spent",
    "correct",
    "attack_success",
    "score",
    "judge",
    "verdict",
    "threat_model",
    "attack_norm",
    "attack_eps",
    "perturbation_l2",
    "perturbation_linf",
    "perturbation_units",
    "certified",
    "certified_label",
    "certified_radius",
    "radius_space",
    "max_radius",
    "covered",
    "certificate",
    "job_id",
    "samples_url",
    "image_url",
    "media_id",
    "clean_media_id",
)
CSP = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; media-src data:; script-src '{SCRIPT_HASH}'"
CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1440px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}.items{font-size:12px}.items td,.items th{padding:3px 5px}.items td{white-space:nowrap}
.items td.text{white-space:normal;overflow-wrap:anywhere;min-width:120px;max-width:300px}.ok{color:#17803d;font-weight:bold}.bad{color:#b42318}
.charts{display:flex;flex-wrap:wrap;gap:16px}svg.chart{background:#fff;border:1px solid #eee;max-width:100%;height:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;font-size:14px}dt{font-weight:bold}dd{margin:0}
.ci{color:#666;font-size:11px;white-space:nowrap}.maybe{color:#9a6700;font-weight:bold}.lede{font-size:15px;max-width:900px}
.filters{display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center;font-size:13px;margin:8px 0}
th button.sort{all:unset;cursor:pointer;font-weight:bold}th[aria-sort=ascending] button::after{content:" ▲"}
th[aria-sort=descending] button::after{content:" ▼"}button.open{cursor:pointer;font:inherit}
tr.drill>td{background:#fafafa;white-space:normal}.pics{display:flex;gap:12px;flex-wrap:wrap}
figure{margin:4px}figure img{width:112px;height:auto;image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:11px;color:#555;text-align:center}.noimg{width:112px;height:60px;border:1px dashed #ccc;
font-size:11px;color:#888;display:flex;align-items:center;justify-content:center}
table.candidates tr.selected{background:#e8f3ff;font-weight:bold}.note{color:#555;font-size:13px;max-width:900px}
table.clips audio{width:220px;height:32px;display:block}
"""


def render(
    audit: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    media: Mapping[str, str] | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """The four report files of an audit, by file name; ``media``: thumbnails (data: URIs) by media id,
    and by "clean:attacked" media ids for the magnified perturbation; ``baseline``: an earlier audit
    (``id``, ``summary``) to compare with."""
    return {
        "report.json": report_json(audit, rows, summary),
        "items.csv": items_csv(rows),
        "items.jsonl": items_jsonl(rows),
        "report.html": report_html(audit, rows, summary, media or {}, baseline).encode("utf-8"),
    }


def comparison_page(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """A standalone HTML page comparing two audits (each ``id`` and ``summary``); no script."""
    section = compare_html(compare(before["summary"], after["summary"]), str(before["id"]), str(after["id"]))
    title = f"SmoothGuard audits {before['id']} → {after['id']}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{section}\n</body></html>\n"
    )


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def report_json(audit: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> bytes:
    """The audit, its summary and its rows without their candidate lists (those are in items.jsonl)."""
    items = [{k: v for k, v in r.items() if k != "candidates"} for r in rows]
    document = {"audit": dict(audit), "summary": dict(summary), "items": items}
    return json.dumps(document, indent=1, ensure_ascii=False, default=_json_default).encode("utf-8")


def items_jsonl(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """One JSON object per line and row (item × variant × σ), every field with the full candidate list."""
    lines = (json.dumps(dict(r), ensure_ascii=False, default=_json_default) for r in rows)
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def items_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """RFC 4180 CSV (CRLF line ends), one line per row; None is an empty field."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


# ---- HTML ------------------------------------------------------------------------------------------

GENERATED_UNITS = {"shapes": "images", "tones": "clips"}  # what a generated set's count counts
GOAL_TEXT = {
    "met": '<span class="ok">met</span>',
    "missed": '<span class="bad">missed</span>',
    "inconclusive": '<span class="maybe">inconclusive</span>',
}


def report_html(
    audit: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    media: Mapping[str, str] | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> str:
    verdict = verdict_line(summary)
    title = f"{verdict} — SmoothGuard audit {audit.get('id', '')}"
    sigmas = ["undefended", *(f"{s:g}" for s in summary["sigmas"])]
    body = [
        f"<h1>{escape(verdict)}</h1>",
        f'<p class="lede">{escape(_subtitle(audit, summary))}</p>',
        _goal_explained(summary),
        "<h2>Setup</h2>",
        _audit_facts(audit),
        "<h2>Headline</h2>",
        _headline_table(summary),
        "<h2>Plots</h2>",
        '<p class="note">Bars: 95 % Wilson intervals. Horizontal lines: the undefended model.</p>',
        f'<div class="charts">{"".join(_charts(summary))}</div>',
        "<h2>Per category</h2>",
        _category_pivot(summary),
        *(["<h2>POPE scores (yes/no items)</h2>", _pope_table(summary)] if summary.get("pope") else []),
        *_certification_section(summary.get("certification")),
        *([_baseline_section(baseline, audit, summary)] if baseline else []),
        "<h2>Run</h2>",
        _run_facts(audit, summary),
        *_clips_section(rows, media or {}),
        "<h2>Items</h2>",
        _items_note(rows, media or {}),
        items_section(rows, media or {}, audit.get("alpha"), sigmas),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _baseline_section(baseline: Mapping[str, Any], audit: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    diff = compare(baseline["summary"], summary)
    return compare_html(diff, str(baseline.get("id", "")), str(audit.get("id", "")))


def verdict_line(summary: Mapping[str, Any]) -> str:
    """The report's title in plain words, from the goal decided on the intervals."""
    if not summary["attacks"]:
        return "No attack in this audit: robustness not judged"
    by_goal: dict[str | None, list[str]] = {}
    for row in summary["headline"][1:]:
        by_goal.setdefault(row.get("goal"), []).append(row["label"])
    if "met" in by_goal:
        return f"Goal met at σ = {', '.join(by_goal['met'])}"
    if "inconclusive" in by_goal:
        return f"Goal not decided yet: too few items at σ = {', '.join(by_goal['inconclusive'])}"
    if "missed" in by_goal:
        return "Goal missed at every σ" if len(by_goal) == 1 else f"Goal missed at σ = {', '.join(by_goal['missed'])}"
    return "Goal not checked (a rate could not be measured)"


def _subtitle(audit: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    parts = [
        f"Audit {audit.get('id', '')}",
        f"model {audit.get('model') or '—'}",
        _dataset_text(audit.get("dataset") or {}),
        f"{summary['n_items']} items ({summary['n_eligible']} eligible for the attack success rate)",
    ]
    return " · ".join(parts)


def _goal_explained(summary: Mapping[str, Any]) -> str:
    judged = ", ".join(summary.get("goal_attacks") or summary["attacks"]) or "none"
    return (
        '<p class="note">The goal, per attack judged (' + escape(judged) + "): the defended model's attack "
        "success rate (ASR) on answers it commits to (does not abstain on) at most ⅓ of the undefended ASR, "
        "its ASR counting abstentions as failures at most ½ of it, and clean accuracy at most 2 points lower. "
        "It is <b>met</b> when every criterion holds across the 95 % intervals, <b>missed</b> when one fails "
        "across them, and <b>inconclusive</b> when the intervals overlap the threshold (more items decide it); "
        "the point-estimate check is in parentheses.</p>"
    )


def _dataset_text(dataset: Mapping[str, Any]) -> str:
    fmt = dataset.get("format", "dataset")
    if fmt in GENERATED_UNITS:
        text = f"synthetic {fmt} set (seed {dataset.get('seed', 0)}, {dataset.get('count')} {GENERATED_UNITS[fmt]})"
    else:
        archive = str(dataset.get("archive") or "")
        text = f"{fmt} (archive {archive[:12]}…)" if archive else str(fmt)
    options = dataset.get("options") or {}
    if options:
        text += " — " + ", ".join(f"{k}: {_value_text(v)}" for k, v in sorted(options.items()))
    return text


def _value_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _eps_text(eps: float, units: str = "pixel") -> str:
    """ε in [0, 1] pixels, with its n/255 form when it is one; in other units, named."""
    if units != "pixel":
        return f"{eps:.4g} ({UNIT_NAMES.get(units, units)})"
    steps = eps * 255
    return f"{eps:.4g} ({round(steps)}/255)" if abs(steps - round(steps)) < 1e-6 else f"{eps:.4g}"


def attack_text(attack: Mapping[str, Any], units: str = "pixel") -> str:
    """An attack's settings in words, e.g. ``pgd: L∞ ε = 0.0627 (16/255), 40 steps, targeted``
    (ε in ``units``: ``pixel``, or ``waveform`` for audio)."""
    name = str(attack.get("name", "attack"))
    title = f"{attack['label']} ({name})" if attack.get("label") and attack["label"] != name else name
    parts = []
    if attack.get("eps") is not None:
        parts.append(
            f"{NORM_NAMES.get(str(attack.get('norm')), attack.get('norm') or '')} ε = {_eps_text(attack['eps'], units)}"
        )
    if attack.get("steps"):
        step = f", step {attack['step_size']:.3g}" if attack.get("step_size") else ""
        parts.append(f"{attack['steps']} steps{step}")
    if attack.get("targeted") is not None:
        parts.append("targeted" if attack["targeted"] else "untargeted")
    if name == "eot" and attack.get("eot_samples"):
        sigma = f" at σ = {attack['sigma']:g}" if attack.get("sigma") else " (σ from the sweep)"
        parts.append(f"{attack['eot_samples']} noise draws per step{sigma}")
    if name == "universal" and attack.get("universal_prompts") and units == "pixel":
        parts.append(f"one image for every prompt, from {attack['universal_prompts']} prompts")
    if attack.get("random_start") is False:
        parts.append("no random start")
    return f"{title}: {', '.join(parts)}" if parts else title


def _facts(facts: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(_json_default(v) if v is not None else '—')}</dd>" for k, v in facts
    )
    return f"<dl>{cells}</dl>"


def _audit_facts(audit: Mapping[str, Any]) -> str:
    units = PERTURBATION_UNITS.get(str(audit.get("modality") or "image"), "pixel")
    attacks = [attack_text(a, units) for a in audit.get("attacks") or []]
    noisy = audit.get("num_samples")
    clean = audit.get("include_clean", True)
    samples = f"{noisy} noisy" + (f" + the clean input = {noisy + 1} candidates per answer" if clean and noisy else "")
    return _facts(
        [
            ("Model", audit.get("model")),
            ("Dataset", _dataset_text(audit.get("dataset") or {})),
            *[("Attack" if len(attacks) == 1 else f"Attack {i + 1}", a) for i, a in enumerate(attacks)],
            ("σ", ", ".join(f"{s:g}" for s in audit.get("sigmas") or []) or None),
            ("Noise space", audit.get("noise_space")),
            ("Samples per input", samples),
            ("Certify", _certify_fact(audit)),
            ("Judge", audit.get("judge")),
        ]
    )


def _certify_fact(audit: Mapping[str, Any]) -> str:
    if not audit.get("certify"):
        return "no"
    return f"CERTIFY, {audit.get('certify_n0')} selection draws, α = {audit.get('alpha')}"


def _wall_time(audit: Mapping[str, Any]) -> str | None:
    try:
        start = datetime.fromisoformat(str(audit["created_at"]).replace("Z", "+00:00"))
        end = datetime.fromisoformat(str(audit["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None
    seconds = int((end - start).total_seconds())
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min {seconds % 60:02d} s"


def _run_facts(audit: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    run = audit.get("run") or {}
    versions = ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items())
    origins = run.get("generated_on") or []
    facts = _facts(
        [
            ("Created", audit.get("created_at")),
            ("Finished", audit.get("finished_at")),
            ("Wall time", _wall_time(audit)),
            ("Generator", ", ".join(run.get("generator") or []) or None),
            ("Embedder", ", ".join(run.get("embedder") or []) or None),
            ("Seeds", ", ".join(str(s) for s in run.get("seeds") or []) or None),
            *[
                ("Generated on" if len(origins) == 1 else f"Generated on {i + 1}", _origin_text(o))
                for i, o in enumerate(origins)
            ],
            (
                "Report written with",
                " · ".join(
                    x for x in (versions, run.get("python") and f"Python {run['python']}", run.get("machine")) if x
                )
                or None,
            ),
        ]
    )
    cost = [
        [
            escape(sigma_text(c["sigma"])),
            num_cell(str(c["rows"])),
            num_cell(str(c["samples"])),
            num_cell("—" if c["generation_s"] is None else f"{c['generation_s']:.1f}"),
        ]
        for c in summary.get("cost") or []
    ]
    note = '<p class="note">Generation seconds: the defense jobs\' batched generation time, summed (GPU time).</p>'
    return facts + table(["σ", "rows", "model calls (samples)", "generation seconds"], cost) + note


def _origin_text(origin: Mapping[str, Any]) -> str:
    """Where jobs' candidates were generated, e.g. ``cuda:0 NVIDIA H100 80GB HBM3 · bfloat16 ·
    revision 1a2b… · torch 2.5.1 · transformers 5.0.0 · gpu-worker-0 · 12 jobs``."""
    parts = [
        origin.get("device"),
        origin.get("dtype"),
        origin.get("revision") and f"revision {origin['revision']}",
        origin.get("torch") and f"torch {origin['torch']}",
        origin.get("transformers") and f"transformers {origin['transformers']}",
        origin.get("host"),
        origin.get("jobs") and f"{origin['jobs']} job{'s' if origin['jobs'] != 1 else ''}",
    ]
    return " · ".join(str(p) for p in parts if p)


def _rate(value: float | None, ci: Sequence[float] | None) -> str:
    """A rate with its interval, e.g. ``62.5% [30.6–86.3]``."""
    if value is None:
        return "—"
    band = f' <span class="ci">[{ci[0] * 100:.0f}–{ci[1] * 100:.0f}]</span>' if ci else ""
    return f"{value * 100:.1f}%{band}"


def _goal(row: Mapping[str, Any]) -> str:
    decided = GOAL_TEXT.get(row.get("goal") or "", "—")
    point = {True: "met", False: "missed", None: "—"}[row.get("meets_goal")]
    return f'{decided} <span class="ci">(point estimate: {point})</span>'


def _headline_table(summary: Mapping[str, Any]) -> str:
    attacks = summary["attacks"]
    scored = any(r["clean_accuracy"] is None and r["clean_score"] is not None for r in summary["headline"])
    head = [
        "σ",
        "clean items",
        "clean accuracy",
        *(["clean judge score"] if scored else []),
        *[f"ASR {a}" for a in attacks],
        *[f"ASR {a}, not abstained" for a in attacks],
        "abstain rate",
        "over-refusal (benign items)",
        "utility retention",
        f"goal ({', '.join(summary.get('goal_attacks', attacks)) or 'no attack'})",
    ]
    body = [
        [
            escape(r["label"]),
            num_cell(str(r["clean_n"])),
            num_cell(_rate(r["clean_accuracy"], r.get("clean_accuracy_ci"))),
            *([num_cell(num(r["clean_score"]))] if scored else []),
            *[num_cell(_rate(r["asr"][a], (r.get("asr_ci") or {}).get(a))) for a in attacks],
            *[num_cell(_rate(r["committed_asr"][a], (r.get("committed_asr_ci") or {}).get(a))) for a in attacks],
            num_cell(_rate(r["abstain_rate"], r.get("abstain_rate_ci"))),
            num_cell(_rate(r.get("over_refusal"), r.get("over_refusal_ci"))),
            num_cell(pct(r["utility_retention"])),
            "—" if r["sigma"] is None else _goal(r),
        ]
        for r in summary["headline"]
    ]
    notes = [
        "ASR: the share of eligible items (undefended clean answer right, or unscored) the attack turned; "
        "“not abstained”: those the defense still answered — the number a caller that drops abstentions acts on. "
        "Brackets: 95 % Wilson intervals, in percent.",
    ]
    if scored:
        notes.append(
            "Clean judge score: the judge's mean score (0–1) where items have no right answer (open questions)."
        )
    return table(head, body) + "".join(f'<p class="note">{escape(n)}</p>' for n in notes)


def _pope_table(summary: Mapping[str, Any]) -> str:
    head = ["variant", "σ", "n", "accuracy", "precision", "recall", "F1", "yes-ratio"]
    body = [
        [
            escape(p["variant"]),
            escape(sigma_text(p["sigma"])),
            num_cell(str(p["n"])),
            *[num_cell(pct(p[k])) for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")],
        ]
        for p in summary["pope"]
    ]
    return table(head, body)


def _category_pivot(summary: Mapping[str, Any]) -> str:
    """Category × measure rows, one column per σ: clean accuracy and each attack's ASR, with n and interval."""
    levels: list[float | None] = [None, *summary["sigmas"]]
    cells = {(c["category"], c["variant"], c["sigma"]): c for c in summary["categories"]}
    measures = [("clean", "accuracy", "clean accuracy")] + [(a, "asr", f"ASR {a}") for a in summary["attacks"]]
    body = []
    for category in sorted({c["category"] for c in summary["categories"]}):
        for variant, key, name in measures:
            found = [cells.get((category, variant, s)) for s in levels]
            if not any(c and c[key] is not None for c in found):
                continue
            body.append(
                [escape(category), escape(name)]
                + [num_cell(_pivot_cell(c, key)) if c else num_cell("—") for c in found]
            )
    head = ["category", "measure", *(sigma_text(s) if s is None else f"σ = {s:g}" for s in levels)]
    return table(head, body) if body else "<p>No category has a measurable rate.</p>"


def _pivot_cell(cell: Mapping[str, Any], key: str) -> str:
    if cell[key] is None:
        return "—"
    return f'{_rate(cell[key], cell.get(f"{key}_ci"))} <span class="ci">n={cell["n"]}</span>'


def _certification_section(cert: Mapping[str, Any] | None) -> list[str]:
    """Cohen et al.'s certified accuracy per σ and radius, and the certificates against each
    attack's perturbations; nothing when no job certified."""
    if not cert or not (cert["accuracy"] or cert["coverage"]):
        return []
    radii = cert["radii"]
    accuracy = [
        [
            escape(sigma_text(a["sigma"])),
            num_cell(str(a["n"])),
            num_cell(pct(a["abstain_rate"])),
            num_cell(num(a["max_radius"])),
            *[num_cell(pct(next((p["accuracy"] for p in a["points"] if p["radius"] == r), None))) for r in radii],
        ]
        for a in cert["accuracy"]
    ]
    head = ["σ", "clean items", "abstained", "max radius", *[f"r ≥ {r:g}" for r in radii]]
    coverage = [
        [
            escape(c["variant"]),
            escape(f"{NORM_NAMES.get(c['norm'], c['norm'])} ε={c['eps']:.4g}" if c["eps"] is not None else "—"),
            escape(sigma_text(c["sigma"])),
            *[num_cell(str(c[k])) for k in ("n", "certified", "covered", "covered_wrong")],
            num_cell(num(c["mean_perturbation_l2"])),
            num_cell(num(c["mean_certified_radius"])),
        ]
        for c in cert["coverage"]
    ]
    wrong = cert["covered_wrong"]
    verdict = f'<span class="{"bad" if wrong else "ok"}">{wrong}</span>'
    return [
        "<h2>Certification (L2 radius, noise-space units)</h2>",
        "<p>Certified accuracy: the share of clean items certified with the right class at radius ≥ r "
        "(up to the largest radius the estimation draws allow).</p>",
        table(head, accuracy),
        "<p>Certificates against the attacks: a certificate covers a perturbation when its radius is at least "
        "‖δ‖₂ (where both are in the same units: pixel noise on images, waveform noise on audio). L∞ attacks "
        "lie outside what smoothing certifies.</p>",
        table(
            ["attack", "threat model", "σ", "n", "certified", "covered", "covered & wrong", "mean ‖δ‖₂", "mean r"],
            coverage,
        ),
        f"<p>Committed wrong answers covered by their certificate: {verdict}</p>",
    ]


def _points(head: Sequence[Mapping[str, Any]], value: Any, band: Any) -> tuple[list[Any], list[Any]]:
    """(σ, value) points and their intervals over the defended rows of the headline."""
    defended = [r for r in head if r["sigma"] is not None]
    return [(r["sigma"], value(r)) for r in defended], [band(r) for r in defended]


def _charts(summary: Mapping[str, Any]) -> list[str]:
    """ASR (all and not abstained), utility and abstain rate against σ with their intervals, the
    undefended model as reference lines, and the consensus histograms."""
    head = summary["headline"]
    undefended = head[0]
    asr: list[Series] = []
    for i, a in enumerate(summary["attacks"]):
        color = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")[i % 5]
        pts, bands = _points(head, lambda r, a=a: r["asr"][a], lambda r, a=a: r["asr_ci"][a])
        asr.append(Series(f"{a}", pts, color=color, errors=bands))
        pts, bands = _points(head, lambda r, a=a: r["committed_asr"][a], lambda r, a=a: r["committed_asr_ci"][a])
        asr.append(Series(f"{a}, not abstained", pts, dash="5 3", color=color, errors=bands))
        asr.append(Series(f"{a} undefended", [(0.0, undefended["asr"][a])], color=color, reference=True))
    accuracy = [(r["sigma"], r["clean_accuracy"]) for r in head if r["sigma"] is not None]
    utility = [
        Series("clean accuracy", accuracy, errors=[r["clean_accuracy_ci"] for r in head if r["sigma"] is not None]),
        Series("retention", [(r["sigma"], r["utility_retention"]) for r in head if r["sigma"] is not None], dash="2 3"),
        Series("undefended", [(0.0, undefended["clean_accuracy"])], color="#888", reference=True),
    ]
    pts, bands = _points(head, lambda r: r["abstain_rate"], lambda r: r["abstain_rate_ci"])
    abstain = [Series("abstain rate", pts, errors=bands)]
    panels = [(f"σ = {p['sigma']:g}", p["counts"]) for p in summary["consensus"]["by_sigma"]]
    return [
        line_chart("Attack success rate vs σ", asr, y_max=1.0),
        line_chart("Clean utility vs σ", utility),
        line_chart("Abstain rate vs σ", abstain, y_max=1.0),
        histogram_panels("Consensus share per σ", panels, summary["consensus"]["edges"]),
    ]


def _items_note(rows: Sequence[Mapping[str, Any]], media: Mapping[str, str]) -> str:
    ids = {r.get("clean_media_id") for r in rows} - {None}
    embedded = len(ids & set(media))
    kind = "Clips" if _has_clips(media) else "Images"
    images = (
        f"{kind} embedded for {embedded} of {len(ids)} items (a size budget keeps large audits readable)."
        if ids
        else "No images were given to this report."
    )
    return (
        f'<p class="note">Every row (item × variant × σ): {len(rows)}, paged. Click a column to sort, an item to '
        f"open its drill-down: the images, every candidate answer with its cluster, the selected one (★) and the "
        f"consensus bound. {escape(images)} items.csv and items.jsonl (one line per row, with the candidates) "
        f"hold the same rows.</p>"
    )


def _has_clips(media: Mapping[str, str]) -> bool:
    return any(uri.startswith("data:audio/") for uri in media.values())


def _clips_section(rows: Sequence[Mapping[str, Any]], media: Mapping[str, str]) -> list[str]:
    """An audio audit's clips, playable in place: per question its clean clip (once per clip: the
    questions about one clip follow each other) and each attack's clip with its undefended answer
    and perturbation norms (waveform amplitude); nothing for an image audit."""
    if not _has_clips(media):
        return []
    undefended = [r for r in rows if r["sigma"] is None]
    variants = list(dict.fromkeys(r["variant"] for r in undefended))
    by_item: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in undefended:
        by_item.setdefault(r["item"], {})[r["variant"]] = r
    body: list[list[str]] = []
    played: set[str] = set()
    for item, found in by_item.items():
        first = next(iter(found.values()))
        cells = [_clip_cell(found.get(v), media, played) for v in variants]
        body.append(
            [
                escape(item),
                f'<td class="text">{escape(str(first["prompt"]))}</td>',
                escape(str(first["label"] or "—")),
                *cells,
            ]
        )
    note = (
        '<p class="note">Each question\'s clean clip and the clip each attack made for it, with the undefended '
        "answer and the perturbation's norms in waveform amplitude (the clip at the model's sampling rate). "
        "Embedded as 16-bit WAV for listening; the numbers come from the stored 32-bit clips.</p>"
    )
    return [
        "<h2>Clips</h2>",
        note,
        f'<div class="scroll">{table(["item", "question", "label", *variants], body, "clips")}</div>',
    ]


def _clip_cell(row: Mapping[str, Any] | None, media: Mapping[str, str], played: set[str]) -> str:
    """A player (once per clip: a clip shared by several questions plays in its first row), the
    answer on it and, attacked, ‖δ‖∞ and ‖δ‖₂."""
    if row is None:
        return "—"
    media_id = str(row.get("media_id") or "")
    uri = media.get(media_id, "")
    if media_id in played:
        player = '<span class="ci">(the clip above)</span>'
    elif uri.startswith("data:audio/"):
        player = f'<audio controls preload="none" src="{escape(uri)}"></audio>'
    else:
        player = '<span class="ci">not embedded</span>'
    played.add(media_id)
    norms = ""
    if row.get("perturbation_linf") is not None:
        norms = f"<br>‖δ‖∞ = {num(row['perturbation_linf'])}, ‖δ‖₂ = {num(row['perturbation_l2'])}"
    answer = f'<br><span class="ci">answer: {escape(str(row.get("answer") or "—"))}</span>'
    return f"<td>{player}{answer}{norms}</td>"
