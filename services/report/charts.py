"""Small SVG charts for the HTML report: no plotting library and no network at view time.

Each function returns an <svg> element as text: horizontal bars, grouped vertical bars, and a
table. Values are escaped; sizes are fixed so the report reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")


def hbar(title: str, labels: Sequence[str], values: Sequence[float], *, unit: str = "", width: int = 640) -> str:
    """One horizontal bar per label."""
    if not labels:
        return _empty(title)
    row, left, top = 26, 220, 30
    height = top + row * len(labels) + 10
    peak = max(max(values), 1e-12)
    parts = [_open(width, height, title)]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        length = (width - left - 90) * value / peak
        parts.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        parts.append(
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{length:.1f}" height="{row - 8}" '
            f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(label)}: {_fmt(value)}{unit}</title></rect>'
        )
        parts.append(f'<text x="{left + length + 6:.1f}" y="{y + 16}">{_fmt(value)}{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def grouped_bars(
    title: str,
    groups: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    width: int = 760,
    highlight: set[tuple[str, str]] | None = None,
) -> str:
    """Vertical bars: one cluster per group, one bar per series. `highlight` outlines (group, series) bars."""
    if not groups or not series:
        return _empty(title)
    height, top, bottom, left = 300, 30, 70, 40
    plot_h = height - top - bottom
    peak = max(max(v) for v in series.values()) or 1.0
    cluster = (width - left - 10) / len(groups)
    bar = cluster * 0.8 / len(series)
    parts = [_open(width, height, title)]
    for gi, group in enumerate(groups):
        x0 = left + gi * cluster + cluster * 0.1
        for si, (name, values) in enumerate(series.items()):
            value = values[gi]
            h = plot_h * value / peak
            outline = ' stroke="#d62728" stroke-width="3"' if highlight and (group, name) in highlight else ""
            parts.append(
                f'<rect class="bar" x="{x0 + si * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar * 0.92:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[si % len(PALETTE)]}"{outline}>'
                f"<title>{escape(group)} / {escape(name)}: {_fmt(value)}</title></rect>"
            )
        parts.append(
            f'<text x="{x0 + cluster * 0.4:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{escape(group)}</text>'
        )
    legend_y = height - 22
    for si, name in enumerate(series):
        x = left + si * 100
        parts.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 16}" y="{legend_y}">{escape(name)}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#888"/>')
    parts.append("</svg>")
    return "".join(parts)


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f'<text class="title" x="4" y="18">{escape(title)}</text>'
    )


def _empty(title: str) -> str:
    return f'<p class="empty">{escape(title)}: no data yet</p>'


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"
    if value is None:
        return "-"
    return str(value)
