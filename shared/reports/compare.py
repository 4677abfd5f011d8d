"""Two audits side by side: the headline's rates of an earlier audit (before) against a later one
(after), σ by σ, each change marked clear when the two 95 % intervals do not overlap (pure;
summaries in, a JSON-serialisable dict, text or HTML out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

Summary = Mapping[str, Any]


def change(
    before: Any, before_ci: Sequence[float] | None, after: Any, after_ci: Sequence[float] | None
) -> dict[str, Any]:
    """One rate before and after: the difference, and ``clear`` "up"/"down" when the intervals are apart."""
    delta = None if before is None or after is None else after - before
    clear = None
    if before_ci and after_ci:
        clear = "up" if after_ci[0] > before_ci[1] else "down" if after_ci[1] < before_ci[0] else None
    return {"before": before, "after": after, "change": delta, "clear": clear}


def _measures(row: Mapping[str, Any], attacks: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    """A headline row's rates by name, each (value, interval)."""
    out = {
        "clean accuracy": (row.get("clean_accuracy"), row.get("clean_accuracy_ci")),
        "abstain rate": (row.get("abstain_rate"), row.get("abstain_rate_ci")),
    }
    for a in attacks:
        out[f"ASR {a}"] = (row["asr"].get(a), (row.get("asr_ci") or {}).get(a))
        out[f"ASR {a}, not abstained"] = (row["committed_asr"].get(a), (row.get("committed_asr_ci") or {}).get(a))
    return out


def compare(before: Summary, after: Summary) -> dict[str, Any]:
    """The σ levels and attacks both audits have, each rate's change, and each σ's goal before → after."""
    attacks = [a for a in after["attacks"] if a in before["attacks"]]
    earlier = {r["label"]: r for r in before["headline"]}
    levels = []
    for row in after["headline"]:
        old = earlier.get(row["label"])
        if old is None:
            continue
        old_rates, new_rates = _measures(old, attacks), _measures(row, attacks)
        levels.append(
            {
                "sigma": row["sigma"],
                "label": row["label"],
                "n": [old["clean_n"], row["clean_n"]],
                "rates": {name: change(*old_rates[name], *new_rates[name]) for name in new_rates},
                "goal": [old.get("goal"), row.get("goal")],
            }
        )
    return {
        "attacks": attacks,
        "levels": levels,
        "only_before": [r["label"] for r in before["headline"] if r["label"] not in {x["label"] for x in levels}],
        "only_after": [r["label"] for r in after["headline"] if r["label"] not in earlier],
        "attacks_only_before": [a for a in before["attacks"] if a not in attacks],
        "attacks_only_after": [a for a in after["attacks"] if a not in attacks],
    }


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _change_text(c: Mapping[str, Any]) -> str:
    if c["change"] is None:
        return "—"
    mark = {"up": " (clearly up)", "down": " (clearly down)"}.get(c["clear"] or "", "")
    return f"{c['change'] * 100:+.1f} pt{mark}"


def _lines(diff: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    lines = []
    for level in diff["levels"]:
        goal = " → ".join(g or "—" for g in level["goal"])
        lines.append((level["label"], f"items {level['n'][0]} → {level['n'][1]}", f"goal {goal}", ""))
        for name, c in level["rates"].items():
            if c["before"] is not None or c["after"] is not None:
                lines.append(("", name, f"{_pct(c['before'])} → {_pct(c['after'])}", _change_text(c)))
    return lines


def compare_text(diff: Mapping[str, Any], before_id: str, after_id: str) -> str:
    """A plain table for the terminal."""
    out = [f"before: {before_id}", f"after:  {after_id}", ""]
    out += [f"{a:<12}{b:<34}{c:<24}{d}".rstrip() for a, b, c, d in _lines(diff)]
    out += _differences(diff)
    return "\n".join(out)


def _differences(diff: Mapping[str, Any]) -> list[str]:
    notes = []
    for key, what in (
        ("only_before", "σ only before"),
        ("only_after", "σ only after"),
        ("attacks_only_before", "attacks only before"),
        ("attacks_only_after", "attacks only after"),
    ):
        if diff[key]:
            notes.append(f"{what}: {', '.join(diff[key])}")
    return ["", *notes] if notes else []


def compare_html(diff: Mapping[str, Any], before_id: str, after_id: str) -> str:
    """The comparison as a report section (escaped; no script)."""
    rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in line) + "</tr>" for line in _lines(diff))
    notes = "".join(f"<p>{escape(n)}</p>" for n in _differences(diff) if n)
    return (
        f"<h2>Compared with audit {escape(before_id)}</h2>"
        f"<p>Before: {escape(before_id)} · after: {escape(after_id)}. A change is “clear” when the two 95 % "
        "intervals do not overlap.</p>"
        "<table><thead><tr><th>σ</th><th>measure</th><th>before → after</th><th>change</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{notes}"
    )
