"""Charts as inline SVG markup: bars with a labelled axis, drawn without scripts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#0d9488", "#d97706", "#dc2626", "#7c3aed", "#64748b")


def _nice_max(value: float, whole: bool = False) -> float:
    """A round top for the axis (for whole numbers: a multiple of 4, so that the four
    steps are whole too)."""
    if whole:
        return float(max(4, math.ceil(value / 4) * 4)) if value <= 40 else _nice_max(value)
    if value <= 0:
        return 1.0
    base = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * base:
            return step * base
    return 10 * base


def _label(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:g}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    unit: str = "",
    colors: Sequence[str] | None = None,
    width: int = 400,
    height: int = 200,
) -> str:
    """A vertical bar chart: its title, one bar per label, a y axis with four steps."""
    left, right, top, bottom = 52, 8, 30, 30
    nums = [float(v) if v is not None else 0.0 for v in values]
    peak = _nice_max(max(nums, default=0.0), all(n == int(n) for n in nums))
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / max(len(nums), 1)
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="4" y="14" class="caption">{escape(title)}</text>',
    ]
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
            'stroke="#e5e7eb" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y + 3.5:.1f}" text-anchor="end" class="axis">'
            f"{escape(_label(peak * i / 4))}</text>"
        )
    every = max(1, math.ceil(len(labels) / max(1, plot_w // 46)))
    for i, (label, value) in enumerate(zip(labels, nums, strict=True)):
        h = plot_h * max(value, 0.0) / peak
        x = left + i * slot + slot * 0.18
        color = (colors or PALETTE)[i % len(colors or PALETTE)] if colors else PALETTE[0]
        out.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.64:.1f}" '
            f'height="{h:.1f}" rx="2" fill="{color}"><title>{escape(label)}: '
            f"{escape(_label(value))} {escape(unit)}</title></rect>"
        )
        if i % every == 0:
            out.append(
                f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 15}" '
                f'text-anchor="middle" class="axis">{escape(_short(label))}</text>'
            )
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#9ca3af" stroke-width="1"/>'
    )
    out.append("</svg>")
    return "".join(out)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _short(label: str) -> str:
    """``2026-03`` → ``Mar 26``; other labels cut to 12 characters."""
    if len(label) == 7 and label[4] == "-" and label[:4].isdigit() and label[5:].isdigit():
        return f"{_MONTHS[int(label[5:]) - 1]} {label[2:4]}"
    return label if len(label) <= 12 else label[:11] + "…"
