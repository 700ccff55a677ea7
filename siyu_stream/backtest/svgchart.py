"""Inline SVG charts for the backtest report: a line chart and a grouped bar chart.

The report must open anywhere, offline, and forward as one file: no script, no web font,
no CDN, so the charts are drawn here as SVG text. Each series is one polyline or one set
of bars with `data-series` naming it; a bar carries a `<title>` (its tooltip) with its
label and value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 520, 190
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 14, 26
"""Margins: room for the value axis on the left and the label axis below."""


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    label: str
    values: Sequence[int | float]
    color: str
    wide: bool = False
    """Drawn wide and pale, under the others (line charts)."""


def scale(value: float) -> tuple[float, int]:
    """(step, intervals) of the value axis: the smallest step of 1, 2 or 5 x 10^k (at least
    1, so whole counts get whole gridlines) that covers `value` in at most five intervals."""
    step = 1.0
    factors = itertools.cycle((2, 2.5, 2))  # 1, 2, 5, 10, 20, 50, ...
    while step * 5 < value:
        step *= next(factors)
    return step, max(math.ceil(value / step), 1)


def _frame(
    labels: Sequence[str], peak: float, fmt: Callable[[float], str], width: int, height: int
) -> tuple[list[str], float]:
    """Gridlines with value labels, and labels along the bottom at least 90 px apart;
    returns the parts and the value at the top of the axis."""
    step, intervals = scale(peak)
    inner_h = height - TOP - BOTTOM
    parts = []
    for i in range(intervals + 1):
        y = TOP + inner_h - inner_h * i / intervals
        parts.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#c9ced6" if i == 0 else "#eceff3"}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(step * i))}</text>"
        )
    if labels:
        inner_w = width - LEFT - RIGHT
        count = max(min(len(labels), inner_w // 90), 2)
        picks = sorted({round(i * (len(labels) - 1) / max(count - 1, 1)) for i in range(count)})
        for index in picks:
            x = LEFT + inner_w * (index + 0.5) / len(labels)
            anchor = "start" if index == 0 and len(picks) > 1 else "middle"
            anchor = "end" if index == len(labels) - 1 and len(picks) > 1 else anchor
            parts.append(
                f'<text x="{x:.1f}" y="{height - 8}" text-anchor="{anchor}">'
                f"{escape(labels[index])}</text>"
            )
    return parts, step * intervals


def _svg(title: str, parts: list[str], width: int, height: int) -> str:
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="10" fill="#4a5260">'
        f"<title>{escape(title)}</title>{body}</svg>"
    )


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """One polyline per series over the same labels (one point per label)."""
    peak = max((max(s.values, default=0) for s in series), default=0)
    parts, top = _frame(labels, peak, fmt, width, height)
    inner_w, inner_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    for s in series:
        points = " ".join(
            f"{LEFT + inner_w * (i + 0.5) / len(s.values):.1f},"
            f"{TOP + inner_h - inner_h * v / top:.1f}"
            for i, v in enumerate(s.values)
        )
        # the baseline drawn wide and pale under the new line: where both agree, the new
        # line runs inside a grey band; where they differ, the band shows alone
        look = 'stroke-width="4" stroke-opacity="0.55"' if s.wide else 'stroke-width="1.3"'
        parts.append(
            f'<polyline data-series="{escape(s.name)}" points="{points}" fill="none" '
            f'stroke="{s.color}" {look} stroke-linejoin="round"/>'
        )
    return _svg(title, parts, width, height)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Bars of every series side by side per label."""
    peak = max((max(s.values, default=0) for s in series), default=0)
    parts, top = _frame(labels, peak, fmt, width, height)
    inner_w, inner_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    slot = inner_w / max(len(labels), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for k, s in enumerate(series):
        parts.append(f'<g data-series="{escape(s.name)}" fill="{s.color}">')
        for i, v in enumerate(s.values):
            h = inner_h * v / top
            x = LEFT + slot * i + slot * 0.1 + bar * k
            tip = f"{labels[i]} {s.label}: {fmt(v)}"
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + inner_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{escape(tip)}</title></rect>'
            )
        parts.append("</g>")
    return _svg(title, parts, width, height)
