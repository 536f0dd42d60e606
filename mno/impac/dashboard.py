"""The tenant dashboard: one self-contained HTML page (inline CSS, inline SVG charts, no
scripts, nothing fetched), rendered from ``widgets.report``'s answer with Jinja2."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from mno.impac import svg

TEMPLATES = Path(__file__).parent / "templates"
AGE_COLORS = ("#16a34a", "#65a30d", "#d97706", "#ea580c", "#dc2626")


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _find(body: dict[str, Any], name: str, group_by: str | None = None) -> dict[str, Any]:
    for widget in body["widgets"]:
        if widget["widget"] == name and (group_by is None or widget["group_by"] == group_by):
            return dict(widget)
    return {"series": [], "totals": {}}


def _num(value: Any) -> float | None:
    if value is None:
        return None
    return float(Decimal(str(value)))


def _chart(
    title: str, series: dict[str, Any], unit: str | None = None, colors: Any = None
) -> Markup:
    labels = [p["x"] for p in series["points"]]
    values = [_num(p["y"]) for p in series["points"]]
    return Markup(  # noqa: S704 - svg.bars escapes every text it writes
        svg.bars(title, labels, values, unit=unit or series.get("unit", ""), colors=colors)
    )


def _money(totals: dict[str, Any], key: str) -> list[str]:
    """``{"USD": "1.00", ...}`` → ``["1.00 USD", ...]`` (an empty map: ``["–"]``)."""
    amounts = totals.get(key) or {}
    return [
        f"{amount} {cur}" if amount is not None else f"– {cur}" for cur, amount in amounts.items()
    ] or ["–"]


def _charts(widget: dict[str, Any], title: str, colors: Any = None) -> list[Markup]:
    return [
        _chart(f"{title} ({s['currency']})" if s["currency"] else title, s, colors=colors)
        for s in widget["series"]
        if s["currency"] is not None
    ]


def view(body: dict[str, Any]) -> dict[str, Any]:
    """What the template shows: tiles, charts and tables per area."""
    revenue = _find(body, "revenue", "month")
    customers = _find(body, "revenue", "customer")
    ar = _find(body, "receivables")
    dso = _find(body, "dso")
    cash = _find(body, "cash")
    pipeline = _find(body, "pipeline")
    wins = _find(body, "win-rate")
    heads = _find(body, "headcount")
    dso_days = [
        f"{value} days ({cur})" if value is not None else f"– ({cur})"
        for cur, value in (dso["totals"].get("dso") or {}).items()
    ] or ["–"]
    rate = wins["totals"].get("win_rate")
    finance = {
        "tiles": [
            ("Revenue", _money(revenue["totals"], "revenue")),
            ("Receivables", _money(ar["totals"], "receivables")),
            ("Overdue", _money(ar["totals"], "overdue")),
            ("DSO", dso_days),
            ("Cash collected", _money(cash["totals"], "cash_collected")),
        ],
        "charts": _charts(revenue, "Revenue by month")
        + _charts(
            ar, f"Receivables by days past due on {ar['totals'].get('as_of', '')}", AGE_COLORS
        )
        + _charts(cash, "Cash collected by month"),
        "customers": [
            (s["currency"], p["x"], p["y"]) for s in customers["series"] for p in s["points"][:10]
        ],
    }
    counts = next((s for s in pipeline["series"] if s["currency"] is None), None)
    sales = {
        "tiles": [
            ("Pipeline", _money(pipeline["totals"], "pipeline")),
            ("Weighted pipeline", _money(pipeline["totals"], "weighted_pipeline")),
            ("Open opportunities", [str(pipeline["totals"].get("open_opportunities", 0))]),
            ("Win rate", [f"{Decimal(rate) * 100:.1f} %" if rate is not None else "–"]),
            ("Won", _money(wins["totals"], "won_amount")),
        ],
        "charts": _charts(pipeline, "Open pipeline by stage")
        + ([_chart("Open opportunities by stage", counts, colors=("#0d9488",))] if counts else [])
        + [
            _chart("Won by month", s, colors=("#16a34a",))
            for s in wins["series"]
            if s["name"] == "won"
        ]
        + [
            _chart("Lost by month", s, colors=("#dc2626",))
            for s in wins["series"]
            if s["name"] == "lost"
        ],
    }
    hr_series = {s["name"]: s for s in heads["series"]}
    hr = {
        "tiles": [
            ("Headcount", [str(heads["totals"].get("headcount", 0))]),
            ("Joiners", [str(heads["totals"].get("joiners", 0))]),
            ("Leavers", [str(heads["totals"].get("leavers", 0))]),
        ],
        "charts": [_chart("Headcount at month end", hr_series["headcount"], colors=("#7c3aed",))]
        if "headcount" in hr_series
        else [],
        "months": [
            (p["x"], p["y"], j["y"], lv["y"])
            for p, j, lv in zip(
                hr_series.get("headcount", {}).get("points", []),
                hr_series.get("joiners", {}).get("points", []),
                hr_series.get("leavers", {}).get("points", []),
                strict=False,
            )
        ],
    }
    return {"finance": finance, "sales": sales, "hr": hr}


def render(body: dict[str, Any], generated: datetime) -> str:
    """The page for ``widgets.report``'s answer ``body``."""
    return (
        _env()
        .get_template("dashboard.html.j2")
        .render(
            body=body,
            generated=generated.strftime("%Y-%m-%d %H:%M UTC"),
            rates=body.get("rates") or {},
            **view(body),
        )
    )
