"""A behaviour series over event time as an SVG chart, with its change points marked.

Each window's 95% interval is a thin bar (class "bar", so the report's layout probe counts it as drawn),
its mean a line; a dashed red line marks where a change began and a red triangle where it was detected.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from flywheel_feedback.services.report.charts import _fmt, _open


def series_chart(
    title: str,
    starts: Sequence[datetime],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    changes: Sequence[tuple[datetime, datetime]] = (),
    width: int = 900,
) -> str:
    """`changes` are (began, detected) pairs."""
    if not starts:
        return f'<p class="empty">{escape(title)}: no data yet</p>'
    height, top, bottom, left, right = 220, 30, 30, 60, 10
    plot_h, plot_w = height - top - bottom, width - left - right
    t0, t1 = min(starts).timestamp(), max(starts).timestamp()
    for began, detected in changes:
        t0, t1 = min(t0, began.timestamp()), max(t1, detected.timestamp())
    span = max(t1 - t0, 1.0)
    lo, hi = min(lows), max(highs)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5

    def x(t: datetime) -> float:
        return left + plot_w * (t.timestamp() - t0) / span

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    step = plot_w / max(len(starts), 1)
    parts = [_open(width, height, title)]
    for t, m, a, b in zip(starts, means, lows, highs, strict=True):
        parts.append(
            f'<rect class="bar" x="{x(t) - step * 0.3:.1f}" y="{y(b):.1f}" width="{max(step * 0.6, 1.0):.1f}" '
            f'height="{max(y(a) - y(b), 1.0):.1f}" fill="#c6d4e6"><title>{t:%Y-%m-%d %H:%M}: {_fmt(m)} '
            f"[{_fmt(a)}, {_fmt(b)}]</title></rect>"
        )
    points = " ".join(f"{x(t):.1f},{y(m):.1f}" for t, m in zip(starts, means, strict=True))
    parts.append(f'<polyline class="mean" points="{points}" fill="none" stroke="#4e79a7" stroke-width="1.5"/>')
    for began, detected in changes:
        parts.append(f'<line class="change" x1="{x(began):.1f}" y1="{top}" x2="{x(began):.1f}" '
                     f'y2="{top + plot_h}" stroke="#d62728" stroke-dasharray="4 3" stroke-width="2">'
                     f"<title>change began {began:%Y-%m-%d %H:%M}</title></line>")
        px = x(detected)
        triangle = f"M{px - 6:.1f},{top - 2} L{px + 6:.1f},{top - 2} L{px:.1f},{top + 8} Z"
        parts.append(f'<path class="detected" d="{triangle}" fill="#d62728">'
                     f"<title>detected {detected:%Y-%m-%d %H:%M}</title></path>")
    parts.append(f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{_fmt(hi)}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">{_fmt(lo)}</text>')
    parts.append(f'<text x="{left}" y="{height - 8}">{min(starts):%m-%d %H:%M}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 8}" text-anchor="end">{max(starts):%m-%d %H:%M}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#888"/>')
    parts.append("</svg>")
    return "".join(parts)
