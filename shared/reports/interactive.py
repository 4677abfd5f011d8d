"""The report's items table: every row as compact JSON in a data block, and one small inline script
(allowed by its SHA-256 in the page's Content-Security-Policy) that pages, sorts, filters and opens
a per-row drill-down (thumbnails, every candidate with its cluster, the selected one, the consensus
bound). The script writes text with ``textContent`` only and shows only ``data:image/`` sources, so
untrusted prompts and answers cannot run code; an audio audit's clips play in the page's Clips
section (``shared.reports.render``), not here (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# The items' columns in the data block, in order; the first ones are the table's.
COLUMNS = (
    "item",
    "category",
    "variant",
    "sigma",
    "prompt",
    "answer",
    "label",
    "correct",
    "attack_success",
    "abstained",
    "consensus_share",
    "samples_spent",
    "verdict",
    "certificate",
    "target",
    "consensus_count",
    "consensus_total",
    "consensus_lower",
    "consensus_upper",
    "stop_reason",
    "threat_model",
    "media_id",
    "clean_media_id",
    "job_id",
    "candidates",
)
# Columns whose strings go through the shared string table (most repeat across rows).
INTERNED = (
    "item",
    "category",
    "variant",
    "prompt",
    "answer",
    "label",
    "verdict",
    "certificate",
    "target",
    "stop_reason",
    "threat_model",
    "media_id",
    "clean_media_id",
    "job_id",
)
PAGE_ROWS = 100
CANDIDATE_CHARS = 300  # a candidate's answer is cut here in the page (items.jsonl has it whole)
DIGITS = 4  # significant digits of the fractions in the data block

SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("items-data").textContent);
  const S = data.strings, C = data.columns, col = {};
  C.forEach((name, i) => { col[name] = i; });
  const interned = new Set(data.interned);
  const value = (row, name) => {
    const v = row[col[name]];
    return interned.has(name) && typeof v === "number" ? S[v] : v;
  };
  const shown = ["item", "category", "variant", "sigma", "prompt", "answer", "label", "correct",
    "attack_success", "abstained", "consensus_share", "samples_spent", "verdict", "certificate"];
  const heads = ["item", "category", "variant", "σ", "prompt", "answer", "label", "correct",
    "attack succeeded", "abstained", "consensus", "samples", "verdict", "certificate"];
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  };
  const fmt = (name, v) => {
    if (v === null || v === undefined || v === "") return "—";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (name === "sigma") return String(v);
    if (typeof v === "number" && !Number.isInteger(v)) return v.toPrecision(3);
    return String(v);
  };
  const pct = (v) => (v === null || v === undefined ? "—" : (v * 100).toFixed(1) + "%");
  const state = { sort: null, desc: false, page: 0, rows: data.rows };
  const root = document.getElementById("items");
  const q = (id) => document.getElementById(id);
  root.hidden = false;

  function matches(row) {
    const text = q("f-text").value.trim().toLowerCase();
    const variant = q("f-variant").value, sigma = q("f-sigma").value, outcome = q("f-outcome").value;
    if (variant && value(row, "variant") !== variant) return false;
    if (sigma && fmt("sigma", value(row, "sigma") === null ? "undefended" : value(row, "sigma")) !== sigma) return false;
    if (outcome === "success" && value(row, "attack_success") !== true) return false;
    if (outcome === "abstained" && value(row, "abstained") !== true) return false;
    if (outcome === "wrong" && value(row, "correct") !== false) return false;
    if (!text) return true;
    return ["item", "category", "prompt", "answer", "verdict"].some(
      (n) => String(value(row, n) || "").toLowerCase().includes(text));
  }
  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return a < b ? -1 : 1;
  }
  function refresh() {
    let rows = data.rows.filter(matches);
    if (state.sort !== null) {
      const name = state.sort, sign = state.desc ? -1 : 1;
      rows = rows.map((r, i) => [r, i]).sort((x, y) =>
        sign * compare(value(x[0], name), value(y[0], name)) || x[1] - y[1]).map((p) => p[0]);
    }
    state.rows = rows;
    const pages = Math.max(1, Math.ceil(rows.length / data.page));
    state.page = Math.min(state.page, pages - 1);
    const body = q("items-body");
    body.replaceChildren();
    const start = state.page * data.page;
    rows.slice(start, start + data.page).forEach((row) => body.appendChild(line(row)));
    q("items-count").textContent = rows.length ? `rows ${start + 1}–${Math.min(rows.length, start + data.page)} of ${rows.length}` +
      (rows.length < data.rows.length ? ` (filtered from ${data.rows.length})` : "") : "no rows match";
    q("page-prev").disabled = state.page === 0;
    q("page-next").disabled = state.page >= pages - 1;
  }
  function line(row) {
    const tr = el("tr");
    shown.forEach((name) => {
      const v = value(row, name);
      if (name === "item") {
        const td = el("td"), button = el("button", v, "open");
        button.type = "button";
        button.setAttribute("aria-expanded", "false");
        button.addEventListener("click", () => toggle(tr, row, button));
        td.appendChild(button);
        tr.appendChild(td);
        return;
      }
      const text = name === "sigma" && v === null ? "undefended" : name === "consensus_share" ? pct(v) : fmt(name, v);
      const cls = ["prompt", "answer", "certificate", "verdict"].includes(name) ? "text" :
        typeof v === "number" ? "num" : (v === true && name === "attack_success") ? "bad" : "";
      tr.appendChild(el("td", text, cls));
    });
    return tr;
  }
  function picture(src, caption) {
    const figure = el("figure");
    if (typeof src === "string" && src.startsWith("data:image/")) {
      const img = el("img");
      img.src = src;
      img.alt = caption;
      figure.appendChild(img);
    } else {
      figure.appendChild(el("div", "not embedded", "noimg"));
    }
    figure.appendChild(el("figcaption", caption));
    return figure;
  }
  function drill(row) {
    const details = el("details");
    details.open = true;
    const sigma = value(row, "sigma");
    details.appendChild(el("summary", `${value(row, "item")} · ${value(row, "variant")} · ` +
      (sigma === null ? "undefended" : `σ = ${sigma}`)));
    const clean = value(row, "clean_media_id"), media = value(row, "media_id");
    const pics = el("div", null, "pics");
    if (data.clips) {
      pics.appendChild(el("p", "Listen to this item's clips in the Clips section above.", "note"));
    } else {
      pics.appendChild(picture(data.media[clean], "clean"));
      if (media && media !== clean) {
        pics.appendChild(picture(data.media[media], value(row, "variant")));
        pics.appendChild(picture(data.media[clean + ":" + media], "perturbation, magnified"));
      }
    }
    details.appendChild(pics);
    const facts = el("dl");
    const fact = (k, v) => { facts.appendChild(el("dt", k)); facts.appendChild(el("dd", v)); };
    fact("prompt", value(row, "prompt"));
    fact("answer", value(row, "answer"));
    if (value(row, "threat_model")) fact("threat model", value(row, "threat_model"));
    if (value(row, "consensus_total")) {
      fact("consensus", `${value(row, "consensus_count")} of ${value(row, "consensus_total")} noisy candidates ` +
        `(${pct(value(row, "consensus_count") / value(row, "consensus_total"))}); ` +
        `one-sided ${(100 * (1 - data.alpha)).toFixed(0)}% bounds ` +
        `${pct(value(row, "consensus_lower"))} – ${pct(value(row, "consensus_upper"))}` +
        (value(row, "abstained") ? "; abstained" : "") + `; stopped: ${value(row, "stop_reason") || "—"}`);
    }
    if (value(row, "certificate")) fact("certificate", value(row, "certificate"));
    if (value(row, "job_id")) fact("job", value(row, "job_id"));
    details.appendChild(facts);
    const candidates = value(row, "candidates") || [];
    if (candidates.length) {
      const table = el("table", null, "candidates");
      const head = el("tr");
      const [indexes, texts, clusters, selected, clean, labels] = candidates;
      ["#", "candidate answer", "cluster", ...(labels ? ["label"] : []), ""].forEach((h) => head.appendChild(el("th", h)));
      table.appendChild(el("thead")).appendChild(head);
      const body = el("tbody");
      indexes.forEach((index, i) => {
        const chosen = selected.includes(i), fromClean = clean.includes(i);
        const tr = el("tr", null, chosen ? "selected" : "");
        tr.appendChild(el("td", index, "num"));
        tr.appendChild(el("td", S[texts[i]], "text"));
        tr.appendChild(el("td", clusters[i] === null ? "—" : clusters[i], "num"));
        if (labels) tr.appendChild(el("td", labels[i] === null ? "—" : labels[i]));
        tr.appendChild(el("td", [chosen ? "★ selected" : "", fromClean ? "clean input" : ""].filter(Boolean).join(", ")));
        body.appendChild(tr);
      });
      table.appendChild(body);
      details.appendChild(table);
    } else if (sigma !== null) {
      details.appendChild(el("p", "No candidates recorded for this row."));
    }
    return details;
  }
  function toggle(tr, row, button) {
    const next = tr.nextElementSibling;
    if (next && next.classList.contains("drill")) {
      next.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const drillRow = el("tr", null, "drill"), td = el("td");
    td.colSpan = shown.length;
    td.appendChild(drill(row));
    drillRow.appendChild(td);
    tr.after(drillRow);
    button.setAttribute("aria-expanded", "true");
  }
  const headRow = q("items-head");
  shown.forEach((name, i) => {
    const th = el("th"), button = el("button", heads[i], "sort");
    button.type = "button";
    button.addEventListener("click", () => {
      state.desc = state.sort === name ? !state.desc : false;
      state.sort = name;
      headRow.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", state.desc ? "descending" : "ascending");
      refresh();
    });
    th.appendChild(button);
    headRow.appendChild(th);
  });
  const options = (id, values) => values.forEach((v) => q(id).appendChild(el("option", v)));
  options("f-variant", data.variants);
  options("f-sigma", data.sigmas);
  ["f-text", "f-variant", "f-sigma", "f-outcome"].forEach((id) =>
    q(id).addEventListener("input", () => { state.page = 0; refresh(); }));
  q("page-prev").addEventListener("click", () => { state.page -= 1; refresh(); });
  q("page-next").addEventListener("click", () => { state.page += 1; refresh(); });
  refresh();
})();
"""
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")

CONTROLS = """<div id="items" class="items-view" hidden>
<div class="filters"><label>search <input id="f-text" type="search" placeholder="item, prompt, answer…"></label>
<label>variant <select id="f-variant"><option value="">all</option></select></label>
<label>σ <select id="f-sigma"><option value="">all</option></select></label>
<label>show <select id="f-outcome"><option value="">every row</option>
<option value="success">attack succeeded</option><option value="abstained">abstained</option>
<option value="wrong">wrong answer</option></select></label>
<button id="page-prev" type="button">◀ previous</button><button id="page-next" type="button">next ▶</button>
<span id="items-count"></span></div>
<div class="scroll"><table class="items"><thead><tr id="items-head"></tr></thead><tbody id="items-body"></tbody></table></div>
</div>
<noscript><p>The items table needs JavaScript; items.csv and items.jsonl hold every row.</p></noscript>"""


class _Strings:
    """A string table: each distinct string stored once, referred to by its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return self.index.setdefault(value, len(self.index))

    def table(self) -> list[str]:
        return list(self.index)


def _candidates(candidates: Sequence[Mapping[str, Any]] | None, strings: _Strings) -> list[Any]:
    """A row's candidates by column: [indexes, texts (string table), clusters, positions selected,
    positions of the clean input, closed-set labels (None when there are none)]; [] without any."""
    found = list(candidates or [])
    if not found:
        return []
    labels = [c.get("label") for c in found]
    return [
        [c.get("index") for c in found],
        [strings(_cut(str(c.get("text") or ""))) for c in found],
        [c.get("cluster") for c in found],
        [i for i, c in enumerate(found) if c.get("selected")],
        [i for i, c in enumerate(found) if c.get("clean")],
        None if all(label is None for label in labels) else labels,
    ]


def _cut(text: str) -> str:
    return text if len(text) <= CANDIDATE_CHARS else text[: CANDIDATE_CHARS - 1] + "…"


def _compact(value: Any) -> Any:
    """Fractions to DIGITS significant digits; NaN (not JSON) to None; anything else as it is."""
    if isinstance(value, float) and not isinstance(value, bool):
        return None if value != value else float(f"{value:.{DIGITS}g}")
    return value


def items_data(
    rows: Sequence[Mapping[str, Any]], media: Mapping[str, str], alpha: float | None, sigmas: Sequence[str]
) -> dict[str, Any]:
    """The data block's document: columns, rows as lists, the string table, the thumbnails."""
    strings = _Strings()
    packed = []
    for row in rows:
        values = [strings(row.get(c)) if c in INTERNED else _compact(row.get(c)) for c in COLUMNS[:-1]]
        packed.append([*values, _candidates(row.get("candidates"), strings)])
    return {
        "columns": list(COLUMNS),
        "interned": list(INTERNED),
        "rows": packed,
        "strings": strings.table(),
        "media": {k: v for k, v in media.items() if v.startswith("data:image/")},
        "clips": any(v.startswith("data:audio/") for v in media.values()),  # played in the Clips section
        "alpha": alpha if alpha is not None else 0.05,
        "page": PAGE_ROWS,
        "variants": list(dict.fromkeys(str(r.get("variant")) for r in rows)),
        "sigmas": list(sigmas),
    }


def script_safe_json(document: Any) -> str:
    """JSON that cannot end its <script> block or open markup: <, > and & as \\u escapes."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def items_section(
    rows: Sequence[Mapping[str, Any]], media: Mapping[str, str], alpha: float | None, sigmas: Sequence[str]
) -> str:
    """The controls, the empty table the script fills, the data block and the script."""
    data = script_safe_json(items_data(rows, media, alpha, sigmas))
    return f'{CONTROLS}\n<script type="application/json" id="items-data">{data}</script>\n<script>{SCRIPT}</script>'
