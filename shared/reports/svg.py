"""Inline SVG charts for the audit report: plain strings, no plotting library, all text escaped."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
WIDTH, HEIGHT = 600, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 175, 34, 48
REFERENCE_DASH = "2 4"
Scale = Callable[[float], float]


Interval = tuple[float, float] | list[float] | None
OFFSET = 5.0  # pixels between the series at one x, so overlapping points and error bars stay visible


@dataclass(frozen=True)
class Series:
    """One line: points (x, y) with y None for a gap; dash is an SVG stroke-dasharray ("6 4");
    errors, one (low, high) or None per point, are drawn as error bars; a reference series is one
    horizontal line at its first point's y across the whole chart (e.g. the undefended model)."""

    name: str
    points: Sequence[tuple[float, float | None]]
    dash: str | None = None
    color: str | None = None
    errors: Sequence[Interval] | None = None
    reference: bool = False


def _open(title: str, width: int = WIDTH, height: int = HEIGHT) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]


def _text(x: float, y: float, label: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(label)}</text>'


def _tick_label(value: float, percent: bool) -> str:
    return f"{value * 100:.0f}%" if percent else f"{value:.2g}"


def _axes(x_ticks: Sequence[float], sx: Scale, sy: Scale, y_max: float, percent: bool, x_label: str) -> list[str]:
    parts = []
    for i in range(6):
        v = y_max * i / 5
        parts += [
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#e3e3e3"/>',
            _text(LEFT - 6, sy(v) + 4, _tick_label(v, percent), "end"),
        ]
    for x in x_ticks:
        parts.append(_text(sx(x), HEIGHT - BOTTOM + 16, f"{x:g}"))
    parts += [
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" y2="{HEIGHT - BOTTOM}" stroke="#333"/>',
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" stroke="#333"/>',
        _text((LEFT + WIDTH - RIGHT) / 2, HEIGHT - 10, x_label),
    ]
    return parts


def _segments(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            runs.append([])
        else:
            runs[-1].append((x, y))
    return [r for r in runs if r]


def _stroke(color: str, dash: str | None) -> str:
    return f'stroke="{color}" stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "")


def _series(series: Series, color: str, sx: Scale, sy: Scale, dx: float = 0.0) -> list[str]:
    if series.reference:
        return _reference(series, color, sy)
    parts = _error_bars(series, color, sx, sy, dx)
    for run in _segments(series.points):
        coords = " ".join(f"{sx(x) + dx:.1f},{sy(y):.1f}" for x, y in run)
        parts.append(f'<polyline points="{coords}" fill="none" {_stroke(color, series.dash)}/>')
        fill = "#fff" if series.dash else color
        parts += [
            f'<circle cx="{sx(x) + dx:.1f}" cy="{sy(y):.1f}" r="3.5" fill="{fill}" stroke="{color}" stroke-width="1.5">'
            f"<title>{escape(series.name)}: {y * 100:.1f}%</title></circle>"
            for x, y in run
        ]
    return parts


def _error_bars(series: Series, color: str, sx: Scale, sy: Scale, dx: float) -> list[str]:
    parts = []
    for (x, y), band in zip(series.points, series.errors or [None] * len(series.points), strict=True):
        if y is None or band is None:
            continue
        cx, low, high = sx(x) + dx, sy(band[0]), sy(band[1])
        parts.append(
            f'<path d="M{cx:.1f},{low:.1f}V{high:.1f}M{cx - 3:.1f},{low:.1f}h6M{cx - 3:.1f},{high:.1f}h6" '
            f'stroke="{color}" stroke-width="1" opacity="0.7" fill="none"/>'
        )
    return parts


def _reference(series: Series, color: str, sy: Scale) -> list[str]:
    y = next((y for _, y in series.points if y is not None), None)
    if y is None:
        return []
    line = f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" {_stroke(color, series.dash or REFERENCE_DASH)}>'
    return [line + f"<title>{escape(series.name)}: {y * 100:.1f}%</title></line>"]


def _legend(series: Sequence[Series]) -> list[str]:
    parts = []
    for i, s in enumerate(series):
        y, x = TOP + 8 + 20 * i, WIDTH - RIGHT + 14
        parts += [
            f'<line x1="{x}" x2="{x + 22}" y1="{y}" y2="{y}" '
            f"{_stroke(_color(s, i), s.dash or (REFERENCE_DASH if s.reference else None))}/>",
            _text(x + 28, y + 4, s.name, "start"),
        ]
    return parts


def _color(series: Series, index: int) -> str:
    return series.color or PALETTE[index % len(PALETTE)]


def line_chart(
    title: str, series: Sequence[Series], *, x_label: str = "σ", percent: bool = True, y_max: float | None = None
) -> str:
    """Lines against σ; the y axis starts at 0 and reaches y_max (default: max(1, largest y)); the
    series are set a few pixels apart at each x."""
    xs = sorted({0.0, *(x for s in series if not s.reference for x, _ in s.points)})
    ys = [y for s in series for _, y in s.points if y is not None]
    top = y_max if y_max is not None else max([1.0, *ys])
    x_span = max(xs[-1], 0.0) or 1.0  # σ axis from 0, so every chart shares the same origin

    def sx(x: float) -> float:
        return LEFT + x / x_span * (WIDTH - LEFT - RIGHT)

    def sy(y: float) -> float:
        return HEIGHT - BOTTOM - min(y, top) / top * (HEIGHT - TOP - BOTTOM)

    parts = _open(title) + _axes(xs, sx, sy, top, percent, x_label)
    lines = [s for s in series if not s.reference]
    for i, s in enumerate(series):
        dx = 0.0 if s.reference else (lines.index(s) - (len(lines) - 1) / 2) * OFFSET
        parts += _series(s, _color(s, i), sx, sy, dx)
    parts += _legend(series)
    return "\n".join([*parts, "</svg>"])


def histogram_panels(title: str, panels: Sequence[tuple[str, Sequence[int]]], edges: Sequence[float]) -> str:
    """Small multiples: one bar histogram per panel (label, counts), bars over `edges`, shared y scale."""
    cols = max(1, min(4, len(panels)))
    pw, ph = 200, 160
    width, height = cols * pw + 20, 40 + ph * max(1, -(-len(panels) // cols))
    top = max([1, *(c for _, counts in panels for c in counts)])
    parts = _open(title, width, height)
    if not panels:
        parts.append(_text(width / 2, 70, "no defended rows"))
    for k, (label, counts) in enumerate(panels):
        parts += _panel(20 + (k % cols) * pw, 30 + (k // cols) * ph, label, counts, edges, top)
    return "\n".join([*parts, "</svg>"])


def _panel(x0: float, y0: float, label: str, counts: Sequence[int], edges: Sequence[float], top: int) -> list[str]:
    inner_w, inner_h, base = 170.0, 90.0, y0 + 110
    bar_w = inner_w / max(1, len(counts))
    parts = [
        _text(x0 + inner_w / 2, y0 + 12, f"{label} (n = {sum(counts)})", extra=' font-weight="bold"'),
        _text(x0 - 2, base - inner_h + 4, str(top), "end", ' fill="#666" font-size="10"'),
        f'<line x1="{x0}" x2="{x0 + inner_w}" y1="{base - inner_h}" y2="{base - inner_h}" stroke="#eee"/>',
        f'<line x1="{x0}" x2="{x0 + inner_w}" y1="{base}" y2="{base}" stroke="#333"/>',
    ]
    for i, c in enumerate(counts):
        h = c / top * inner_h
        parts.append(
            f'<rect x="{x0 + i * bar_w + 1:.1f}" y="{base - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{edges[i]:g}–{edges[i + 1]:g}: {c}</title></rect>'
        )
    parts += [
        _text(x0 + i * inner_w / 2, base + 14, f"{edges[0] + i * (edges[-1] - edges[0]) / 2:g}") for i in range(3)
    ]
    parts.append(_text(x0 + inner_w / 2, base + 28, "consensus share", extra=' fill="#666" font-size="10"'))
    return parts
