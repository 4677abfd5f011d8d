"""Audit report files: report.json, items.csv and one self-contained report.html (pure; bytes out).

The HTML loads nothing from outside (inline CSS, inline SVG, no script) and its Content-Security-Policy
forbids scripts, so untrusted prompts and answers, which are escaped anyway, cannot run code.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit

from shared.reports.certification import NORM_NAMES
from shared.reports.html import flag, num, num_cell, pct, sigma_text, table, text_cell
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
)
MAX_ITEM_ROWS = 500
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}.items{font-size:12px}.items td,.items th{padding:3px 5px}.items td{white-space:nowrap}
.items td.text{white-space:normal;overflow-wrap:anywhere;min-width:140px;max-width:360px}.ok{color:#17803d;font-weight:bold}.bad{color:#b42318}
.charts{display:flex;flex-wrap:wrap;gap:16px}svg.chart{background:#fff;border:1px solid #eee;max-width:100%;height:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px;font-size:14px}dt{font-weight:bold}dd{margin:0}
"""


def render(audit: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> dict[str, bytes]:
    """The three report files of an audit, by file name."""
    return {
        "report.json": report_json(audit, rows, summary),
        "items.csv": items_csv(rows),
        "report.html": report_html(audit, rows, summary).encode("utf-8"),
    }


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


def report_json(audit: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> bytes:
    document = {"audit": dict(audit), "summary": dict(summary), "items": [dict(r) for r in rows]}
    return json.dumps(document, indent=2, ensure_ascii=False, default=_json_default).encode("utf-8")


def items_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """RFC 4180 CSV (CRLF line ends), one line per row; None is an empty field."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


# ---- HTML ------------------------------------------------------------------------------------------


def report_html(audit: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    title = f"SmoothGuard audit {audit.get('id', '')}"
    body = [
        f"<h1>{escape(title)}</h1>",
        _audit_facts(audit),
        "<h2>Headline</h2>",
        _headline_table(summary),
        "<h2>Plots</h2>",
        f'<div class="charts">{"".join(_charts(summary))}</div>',
        "<h2>Per category</h2>",
        _category_table(summary),
        *(["<h2>POPE scores (yes/no items)</h2>", _pope_table(summary)] if summary.get("pope") else []),
        *_certification_section(summary.get("certification")),
        "<h2>Items</h2>",
        _items_table(rows),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _audit_facts(audit: Mapping[str, Any]) -> str:
    dataset = audit.get("dataset") or {}
    attacks = "; ".join(_attack(a) for a in audit.get("attacks") or [])
    facts = [
        ("Model", audit.get("model")),
        ("Dataset", json.dumps(dataset, default=str, sort_keys=True)),
        ("Attacks", attacks),
        ("σ", ", ".join(f"{s:g}" for s in audit.get("sigmas") or [])),
        ("Noise space", audit.get("noise_space")),
        ("Samples per input", audit.get("num_samples")),
        ("Certify", _certify_fact(audit)),
        ("Judge", audit.get("judge")),
        ("Created", audit.get("created_at")),
        ("Finished", audit.get("finished_at")),
    ]
    return (
        "<dl>"
        + "".join(
            f"<dt>{escape(k)}</dt><dd>{escape(_json_default(v) if v is not None else '—')}</dd>" for k, v in facts
        )
        + "</dl>"
    )


def _certify_fact(audit: Mapping[str, Any]) -> str:
    if not audit.get("certify"):
        return "no"
    return f"CERTIFY, {audit.get('certify_n0')} selection draws, α = {audit.get('alpha')}"


def _attack(attack: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={v}" for k, v in attack.items() if k not in ("name", "label"))
    title = attack.get("name", "attack")
    if attack.get("label") and attack["label"] != title:
        title = f"{attack['label']}: {title}"
    return f"{title} ({params})" if params else str(title)


def _goal(met: bool | None) -> str:
    return flag(met, '<span class="ok">met</span>', '<span class="bad">not met</span>')


def _headline_table(summary: Mapping[str, Any]) -> str:
    attacks = summary["attacks"]
    head = [
        "σ",
        "clean n",
        "clean accuracy",
        "clean score",
        *[f"ASR {a}" for a in attacks],
        *[f"ASR {a}, not abstained" for a in attacks],
        "abstain rate",
        "over-refusal (benign items)",
        "utility retention",
        f"goal ({', '.join(summary.get('goal_attacks', attacks))}): committed ASR ≤ ⅓, ASR ≤ ½, accuracy −2 pt",
    ]
    body = [
        [
            escape(r["label"]),
            num_cell(str(r["clean_n"])),
            num_cell(pct(r["clean_accuracy"])),
            num_cell(num(r["clean_score"])),
            *[num_cell(pct(r["asr"][a])) for a in attacks],
            *[num_cell(pct(r["committed_asr"][a])) for a in attacks],
            num_cell(pct(r["abstain_rate"])),
            num_cell(pct(r.get("over_refusal"))),
            num_cell(pct(r["utility_retention"])),
            _goal(r["meets_goal"]),
        ]
        for r in summary["headline"]
    ]
    return table(head, body)


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


def _category_table(summary: Mapping[str, Any]) -> str:
    body = [
        [
            escape(c["category"]),
            escape(c["variant"]),
            escape(sigma_text(c["sigma"])),
            num_cell(str(c["n"])),
            num_cell(pct(c["accuracy"])),
            num_cell(pct(c["asr"])),
        ]
        for c in summary["categories"]
    ]
    return table(["category", "variant", "σ", "n", "accuracy", "ASR"], body)


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
        "‖δ‖₂ (pixel noise only). L∞ attacks lie outside what smoothing certifies.</p>",
        table(
            ["attack", "threat model", "σ", "n", "certified", "covered", "covered & wrong", "mean ‖δ‖₂", "mean r"],
            coverage,
        ),
        f"<p>Committed wrong answers covered by their certificate: {verdict}</p>",
    ]


def _charts(summary: Mapping[str, Any]) -> list[str]:
    """ASR, utility and abstain rate against σ (undefended drawn at σ = 0), and consensus histograms."""
    head = summary["headline"]
    xs = [0.0 if r["sigma"] is None else r["sigma"] for r in head]
    x_label = "σ (0 = undefended)"
    asr = [Series(a, list(zip(xs, [r["asr"][a] for r in head], strict=True))) for a in summary["attacks"]]
    accuracy = [r["clean_accuracy"] if r["clean_accuracy"] is not None else r["clean_score"] for r in head]
    utility = [
        Series("clean accuracy", list(zip(xs, accuracy, strict=True))),
        Series("retention", list(zip(xs, [r["utility_retention"] for r in head], strict=True)), dash="2 3"),
        Series("undefended", [(x, accuracy[0]) for x in xs], dash="6 4", color="#888"),
    ]
    abstain = [
        Series(
            "abstain rate", [(x, r["abstain_rate"]) for x, r in zip(xs, head, strict=True) if r["sigma"] is not None]
        )
    ]
    panels = [(f"σ = {p['sigma']:g}", p["counts"]) for p in summary["consensus"]["by_sigma"]]
    return [
        line_chart("Attack success rate vs σ", asr, x_label=x_label, y_max=1.0),
        line_chart("Clean utility vs σ", utility, x_label=x_label),
        line_chart("Abstain rate vs σ", abstain, y_max=1.0),
        histogram_panels("Consensus share per σ", panels, summary["consensus"]["edges"]),
    ]


def _safe_url(url: Any) -> str | None:
    """The URL if it is http(s) or relative; anything else (javascript:, data:) is not linked."""
    text = str(url or "").strip()
    return text if text and urlsplit(text).scheme in ("http", "https", "") else None


def _links(row: Mapping[str, Any]) -> str:
    links = [(name, _safe_url(row.get(key))) for name, key in (("samples", "samples_url"), ("image", "image_url"))]
    return " ".join(f'<a href="{escape(u, quote=True)}" rel="noopener noreferrer">{name}</a>' for name, u in links if u)


def _items_table(rows: Sequence[Mapping[str, Any]]) -> str:
    shown = rows[:MAX_ITEM_ROWS]
    head = [
        "item",
        "category",
        "variant",
        "σ",
        "prompt",
        "answer",
        "label",
        "target",
        "correct",
        "attack success",
        "abstained",
        "consensus",
        "samples",
        "verdict",
        "certificate",
        "links",
    ]
    body = [
        [
            escape(str(r.get("item"))),
            escape(str(r.get("category"))),
            escape(str(r.get("variant"))),
            escape(sigma_text(r.get("sigma"))),
            text_cell(r.get("prompt")),
            text_cell(r.get("answer")),
            escape(str(r.get("label") or "—")),
            escape(str(r.get("target") or "—")),
            flag(r.get("correct")),
            flag(r.get("attack_success")),
            flag(r.get("abstained")),
            num_cell(num(r.get("consensus_share"))),
            num_cell(num(r.get("samples_spent"))),
            escape(str(r.get("verdict") or "")),
            text_cell(r.get("certificate")),
            _links(r),
        ]
        for r in shown
    ]
    note = f"<p>Showing {len(shown)} of {len(rows)} rows; items.csv has them all.</p>"
    return f'{note}<div class="scroll">{table(head, body, "items")}</div>'
