"""One self-contained HTML dashboard: inline CSS and SVG, no scripts, no network."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from mno.reports.model import Report, Series

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;
color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;color:#b8c0cc;font-size:13px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:18px;padding:18px}
section{background:#fff;border-radius:8px;padding:16px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
section h2{margin:0 0 10px;font-size:17px}
.metrics{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:12px}
.metric{background:#f0f3f7;border-radius:6px;padding:8px 12px;min-width:110px}
.metric b{display:block;font-size:18px} .metric span{font-size:12px;color:#5b6475}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #e6e9ee}
th{color:#5b6475;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#8a93a3;font-size:13px}
svg text{font-size:11px;fill:#4b5363}
"""
_COLORS = ("#3b82f6", "#ef4444", "#10b981", "#f59e0b", "#8b5cf6", "#14b8a6")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return f"{value['amount']} {value['currency']}"
    if value is None:
        return "–"
    return str(value)


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    base = 10.0**exponent
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * base:
            return step * base
    return 10 * base


def bar_chart(series: Series, color: str = _COLORS[0], width: int = 520, height: int = 200) -> str:
    """A bar chart with a labelled y axis (the unit) and x axis (months)."""
    left, right, top, bottom = 58, 10, 14, 46
    values = [float(v) if v is not None else 0.0 for _, v in series.points]
    top_value = _nice_max(max(values, default=0.0))
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(values), 1)
    slot = plot_w / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(series.name)} per month">',
        f"<title>{html.escape(series.name)} ({html.escape(series.unit)}) per month</title>",
    ]
    for i in range(5):
        y_val = top_value * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#e6e9ee"/>'
        )
        step = top_value / 4
        decimals = 0 if step == int(step) else (1 if step * 10 == int(step * 10) else 2)
        label = f"{y_val:,.{decimals}f}"
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for i, ((month, _), value) in enumerate(zip(series.points, values, strict=True)):
        h = plot_h * value / top_value
        x = left + i * slot + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{color}"><title>{month}: {_fmt(value)} '
            f"{html.escape(series.unit)}</title></rect>"
        )
        if n <= 12 or i % max(1, n // 12) == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h + 14}" '
                f'text-anchor="middle">{month[2:4]}/{month[5:]}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        f'stroke="#4b5363"/>'
    )
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#4b5363"/>')
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        f"Month (YY/MM)</text>"
    )
    parts.append(
        f'<text transform="translate(14,{top + plot_h / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle">{html.escape(series.unit)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No rows.</p>'
    cols = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in cols)
    body = []
    for row in rows:
        cells = []
        for c in cols:
            v = row.get(c)
            cls = ' class="num"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{html.escape(_fmt(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(report: Report) -> str:
    parts = [f'<section id="{report.area}"><h2>{html.escape(report.title)}</h2>']
    if not report.available:
        parts.append(f'<p class="note">{html.escape(report.note or "No data.")}</p></section>')
        return "".join(parts)
    parts.append('<div class="metrics">')
    for key, value in report.metrics.items():
        if isinstance(value, dict) and not {"amount", "currency"} <= set(value):
            value = ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "–"
        parts.append(
            f"<div class=metric><b>{html.escape(_fmt(value))}</b>"
            f"<span>{html.escape(key.replace('_', ' '))}</span></div>"
        )
    parts.append("</div>")
    for i, series in enumerate(report.series):
        parts.append(f"<h3>{html.escape(series.name)}</h3>")
        parts.append(bar_chart(series, _COLORS[i % len(_COLORS)]))
    for name, rows in report.tables.items():
        if name == "monthly":
            continue
        parts.append(f"<h3>{html.escape(name.replace('_', ' '))}</h3>")
        parts.append(_table(rows))
    parts.append("</section>")
    return "".join(parts)


def render(reports: Sequence[Report], generated_at: datetime, store: str) -> str:
    window = reports[0].window if reports else None
    period = f"{window.months} months to {window.end}" if window else ""
    sections = "".join(_section(r) for r in reports)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>mno platform report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>mno platform report</h1><p>{html.escape(period)} · generated "
        f"{generated_at.strftime('%Y-%m-%d %H:%M UTC')} · store {html.escape(store)}</p>"
        f"</header><main>{sections}</main></body></html>\n"
    )
