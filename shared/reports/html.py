"""HTML cells and tables for the report (pure): values formatted and escaped, tables from cells."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}g}" if isinstance(value, float) else escape(str(value))


def sigma_text(value: float | None) -> str:
    return "undefended" if value is None else f"{value:g}"


def num_cell(text: str) -> str:
    return f'<td class="num">{text}</td>'


def table(head: Sequence[str], body: Sequence[Sequence[str]], css: str = "") -> str:
    """A table from already-escaped cell HTML; cells starting with '<td' are used as they are."""
    cells = ["".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) for row in body]
    return (
        f'<table class="{css}"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(f"<tr>{c}</tr>" for c in cells)
        + "</tbody></table>"
    )
