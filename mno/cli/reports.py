"""mno report: platform KPIs in the terminal, as JSON/CSV, and as an HTML dashboard.

The report queries, the store, rich's layout classes and csv are imported inside the
commands that use them: `mno report --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, cell, console, render, success
from mno.errors import BadInput

if TYPE_CHECKING:
    from mno.reports.model import Report

app = typer.Typer(
    help="Platform KPIs (summary, per-area detail, HTML) and a tenant's business KPIs.",
    no_args_is_help=True,
)

_BLOCKS = "▁▂▃▄▅▆▇█"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"
    csv = "csv"


PeriodOpt = Annotated[
    str | None, typer.Option("--period", help="Last month of the window, YYYY-MM (default: now).")
]
MonthsOpt = Annotated[int, typer.Option("--months", help="How many months the window covers.")]
CurrencyOpt = Annotated[str | None, typer.Option("--currency", help="Only this currency.")]


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _BLOCKS[0] * len(values)
    return "".join(
        _BLOCKS[1 + min(6, int(v / top * 6.999))] if v > 0 else _BLOCKS[0] for v in values
    )


def _metric_text(value: Any) -> str:
    return cell(value)


def _panel(report: Report) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    if not report.available:
        return Panel(report.note or "No data.", title=report.title, border_style="dim")
    metrics = Table.grid(padding=(0, 2))
    metrics.add_column(style="bold")
    metrics.add_column()
    for key, value in report.metrics.items():
        metrics.add_row(key.replace("_", " "), _metric_text(value))
    parts: list[Any] = [metrics]
    if report.series:
        spark = Table.grid(padding=(0, 2))
        spark.add_column(style="dim")
        spark.add_column(style="cyan")
        spark.add_column(justify="right")
        for s in report.series:
            values = [float(v or 0) for _, v in s.points]
            spark.add_row(s.name, sparkline(values), f"{_metric_text(s.points[-1][1])} {s.unit}")
        parts.append(spark)
    for name, rows in report.tables.items():
        if name == "monthly" or not rows:
            continue
        num_key = next(
            (
                k
                for k, v in rows[0].items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            ),
            None,
        )
        table = Table(title=name.replace("_", " "), show_edge=False, title_justify="left")
        for col in rows[0]:
            table.add_column(col.replace("_", " "))
        if num_key:
            table.add_column("")
            top = max(float(r.get(num_key) or 0) for r in rows) or 1.0
        for row in rows[:10]:
            cells = [_metric_text(row.get(c)) for c in rows[0]]
            if num_key:
                cells.append("█" * max(0, round(float(row.get(num_key) or 0) / top * 20)))
            table.add_row(*cells)
        parts.append(table)
    return Panel(Group(*parts), title=report.title, border_style="blue")


def _window(period: str | None, months: int, currency: str | None) -> Any:
    from mno.reports.model import Window

    return Window.ending(period, months, currency)


@app.command("summary")
def summary(
    period: PeriodOpt = None,
    months: MonthsOpt = 12,
    currency: CurrencyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Print one screen of panels: every area at a glance."""
    from mno.reports import kpis
    from mno.store.db import session_scope

    window = _window(period, months, currency)
    with session_scope(write=False) as s:
        reports = kpis.summary(s, window)
    if output is not Format.table:
        render(
            {
                "period": window.end,
                "months": window.months,
                "reports": [r.as_dict() for r in reports],
            },
            output,
        )
        return
    from rich.columns import Columns

    console().print(Columns([_panel(r) for r in reports], equal=False, expand=False))


@app.command("rebuild")
def rebuild(output: OutputOpt = Format.table) -> None:
    """Recompute the monthly invoice and revenue rollups from the invoices."""
    from mno.reports import rollup
    from mno.store.db import session_scope

    with session_scope() as s:
        counts = rollup.rebuild(s)
    if output is Format.table:
        success(
            f"rollups rebuilt: {counts['report_invoice_month']} invoice rows, "
            f"{counts['report_revenue_month']} revenue rows"
        )
    else:
        render(counts, output)


@app.command("rebuild-mrr")
def rebuild_mrr(output: OutputOpt = Format.table) -> None:
    """Recompute the normalised-MRR rollup from the invoices and their lines."""
    from mno.reports import mrr_rollup
    from mno.store.db import session_scope

    with session_scope() as s:
        rows = mrr_rollup.rebuild(s)
    if output is Format.table:
        success(f"MRR rollup rebuilt: {rows} rows")
    else:
        render({mrr_rollup.TABLE: rows}, output)


def _area_command(area: str, doc: str) -> None:
    def command(
        period: PeriodOpt = None,
        months: MonthsOpt = 12,
        currency: CurrencyOpt = None,
        table: Annotated[
            str | None, typer.Option("--table", help="With -o csv: which detail table.")
        ] = None,
        output: Annotated[
            ReportFormat,
            typer.Option("--output", "-o", help="table, json, yaml or csv.", case_sensitive=False),
        ] = ReportFormat.table,
    ) -> None:
        from mno.reports import kpis
        from mno.store.db import session_scope

        window = _window(period, months, currency)
        with session_scope(write=False) as s:
            report = kpis.report(s, area, window)
        if output is ReportFormat.csv:
            _write_csv(report, table)
        elif output is ReportFormat.table:
            console().print(_panel(report))
            monthly = report.tables.get("monthly")
            if monthly:
                render(monthly, Format.table, title="by month")
        else:
            render(report.as_dict(), Format(output.value))

    command.__doc__ = doc
    app.command(area)(command)


def _write_csv(report: Report, table: str | None) -> None:
    import csv

    name = table or ("monthly" if "monthly" in report.tables else next(iter(report.tables), None))
    if name is None or name not in report.tables:
        raise BadInput(
            f"no table {table!r} in the {report.area} report",
            f"one of: {', '.join(report.tables) or 'none'}",
        )
    rows = report.tables[name]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    if rows:
        writer.writerow(rows[0].keys())
        for row in rows:
            writer.writerow(_csv_cell(k, v) for k, v in row.items())


def _csv_cell(key: str, value: Any) -> Any:
    """A cell: money under its own currency's column is the amount alone (``150.00``)."""
    if isinstance(value, dict):
        if value.get("currency") == key and set(value) == {"amount", "currency"}:
            return value["amount"]
        return _metric_text(value)
    return value


for _area, _doc in {
    "revenue": "Revenue: MRR/ARR per currency, by plan, app and month, ARPA, NRR.",
    "tenants": "Tenants: by status and tier, new/churned/reactivated per month, arrears.",
    "invoices": "Invoices: outstanding and overdue amounts and counts, DSO.",
    "instances": "Nex instances: by status and host, provisioning p50/p95, failures.",
    "backups": "Nex backups: last successful backup per instance, overdue instances.",
    "webhooks": "Webhooks: success rate, latency p50/p95, exhausted, disabled endpoints.",
    "sync": "Sync: connections by health, last success age, changes per day, conflicts.",
}.items():
    _area_command(_area, _doc)


@app.command("html")
def html_report(
    out: Annotated[
        Path | None, typer.Option("--out", help="File to write (default report.html).")
    ] = None,
    period: PeriodOpt = None,
    months: MonthsOpt = 12,
    currency: CurrencyOpt = None,
    legacy_out: Annotated[Path | None, typer.Option("-o", hidden=True)] = None,
) -> None:
    """Write a self-contained HTML dashboard (inline SVG, no scripts, no network)."""
    from mno.cli.params import deprecated_out

    out = deprecated_out(out, legacy_out, "-o") or Path("report.html")
    from mno import clock
    from mno.reports import html, kpis
    from mno.store.db import get_engine, redact, session_scope

    window = _window(period, months, currency)
    with session_scope(write=False) as s:
        reports = kpis.summary(s, window)
    page = html.render(reports, clock.now(), redact(str(get_engine().url)))
    out.write_text(page, encoding="utf-8")
    success(f"wrote {out} ({len(page):,} bytes)")


# -- mno report tenant: KPIs on one tenant's business data (mno.impac) ------------------


def _impac_table(widget: dict[str, Any]) -> Any:
    """One widget as a rich table: monthly series with a sparkline and their sum (money)
    or last value (counts); other series with a column per label."""
    from decimal import Decimal

    from rich.table import Table

    group = widget.get("group_by")
    title = widget["widget"] + (f" by {group}" if group else "")
    series = widget["series"]
    monthly = group == "month"
    table = Table(title=title, title_justify="left", show_edge=False)
    table.add_column("series")
    table.add_column("currency")
    labels: list[str] = []
    if monthly:
        table.add_column("trend")
        table.add_column("first", justify="right")
        table.add_column("last", justify="right")
        table.add_column("sum" if any(s["currency"] for s in series) else "", justify="right")
    else:
        for s in series:
            for p in s["points"][:12]:
                if p["x"] not in labels:
                    labels.append(p["x"])
        for label in labels:
            table.add_column(label, justify="right")
    for s in series:
        ys = [p["y"] for p in s["points"]]
        if monthly:
            spark = sparkline([float(Decimal(str(y))) if y is not None else 0.0 for y in ys])
            total = (
                str(sum((Decimal(str(y)) for y in ys if y is not None), Decimal(0)))
                if s["currency"]
                else ""
            )
            table.add_row(
                s["name"], s["currency"] or "-", spark, cell(ys[0] if ys else None),
                cell(ys[-1] if ys else None), total,
            )  # fmt: skip
        else:
            found = {p["x"]: p["y"] for p in s["points"]}
            table.add_row(s["name"], s["currency"] or "-", *(cell(found.get(x)) for x in labels))
    return table


def _impac_totals(totals: dict[str, Any]) -> str:
    parts = []
    for key, value in totals.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{v if v is not None else '-'} {cur}" for cur, v in value.items())
            parts.append(f"{key.replace('_', ' ')}: {shown or '-'}")
        else:
            parts.append(f"{key.replace('_', ' ')}: {cell(value)}")
    return " · ".join(parts)


@app.command("tenant")
def tenant_report(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write the dashboard page to this file.")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="First day, YYYY-MM-DD (default: 11 months back).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (default: today).")
    ] = None,
    currency: Annotated[
        str | None,
        typer.Option("--currency", help="Only this currency, or convert into it with rates."),
    ] = None,
    rate: Annotated[
        list[str] | None,
        typer.Option("--rate", help="A conversion rate SOURCE:TARGET=RATE (repeatable)."),
    ] = None,
    rates_file: Annotated[
        Path | None, typer.Option("--rates", help="A YAML rate table (rates: {EUR:USD: ...}).")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Print a tenant's business KPIs: finance, sales and HR (or write them as HTML)."""
    from mno import clock
    from mno.impac import currency as currencies
    from mno.impac import dashboard, widgets
    from mno.impac.model import Query, Window
    from mno.store.db import session_scope

    rates = currencies.parse_rates(rate or [])
    if rates_file is not None:
        rates = currencies.load_rates(rates_file).merged(rates)
    query = Query(Window.of(start, end), currencies.View.of(currency, rates))
    with session_scope(write=False) as s:
        body = widgets.report(s, tenant, query)
    if html_out is not None:
        page = dashboard.render(body, clock.now())
        html_out.write_text(page, encoding="utf-8")
        success(f"wrote {html_out} ({len(page):,} bytes)")
        return
    if output is not Format.table:
        render(body, output)
        return
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    window = body["window"]
    head = f"{body['name']} ({body['tenant']}) · {window['from']} to {window['to']}"
    if body.get("rates"):
        head += " · rates: " + ", ".join(f"{k}={v}" for k, v in body["rates"].items())
    out = console()
    out.print(Text(head, style="bold"))
    for area, names in (
        ("Finance", ("revenue", "receivables", "dso", "cash")),
        ("Sales", ("pipeline", "win-rate")),
        ("HR", ("headcount",)),
    ):
        parts: list[Any] = []
        for widget in body["widgets"]:
            if widget["widget"] not in names:
                continue
            if widget["series"] and widget["widget"] != "dso":
                parts.append(_impac_table(widget))
            parts.append(Text(_impac_totals(widget["totals"]), style="dim"))
        out.print(Panel(Group(*parts), title=area, border_style="blue"))
