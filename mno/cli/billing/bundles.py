"""mno bundle: create (-f YAML or flags), list, show, archive.

A bundle sells plans and/or apps as one product at one price. Tenants subscribe with
``mno subscription create TENANT --bundle CODE``.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_page, render_stream, success
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm
from mno.errors import BadInput

app = typer.Typer(
    help="Catalogue: bundles of plans and apps sold as one product.", no_args_is_help=True
)
COLUMNS = ["code", "currency", "pricing", "price", "percent_off", "interval_unit", "plans", "apps"]


@app.command("create")
def create(
    code: Annotated[str | None, typer.Argument(help="Code (omit with -f).")] = None,
    file: Annotated[
        Path | None, typer.Option("-f", "--file", help="YAML documents (kind: Bundle).")
    ] = None,
    plan: Annotated[
        list[str] | None, typer.Option("--plan", help="A part plan's code (repeat).")
    ] = None,
    app_code: Annotated[
        list[str] | None, typer.Option("--app", help="A part app's code (repeat).")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="Currency (the plans' own).")] = None,
    price: Annotated[str | None, typer.Option(help="Fixed price per interval.")] = None,
    percent_off: Annotated[
        str | None, typer.Option(help="Percent off the sum of the plans' fixed charges.")
    ] = None,
    interval: Annotated[str, typer.Option(help="Interval unit (the plans' own).")] = "month",
    every: Annotated[int, typer.Option(help="Every this many units.")] = 1,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create (or update) a bundle from a YAML file, or from flags."""
    from mno.billing import bundles
    from mno.store.db import session_scope

    if file is not None:
        if code is not None:
            raise BadInput("give a bundle code or -f FILE", "not both")
        if not file.exists():
            raise BadInput(f"{file}: no such file")
        items = bundles.parse_documents(file.read_text(), str(file))
    elif not code:
        raise BadInput("give a bundle code or -f FILE")
    else:
        if currency is None:
            raise BadInput("--currency is required")
        spec: dict[str, Any] = {
            "name": name or "",
            "currency": currency,
            "interval": {"unit": interval, "every": every},
            "plans": plan or [],
            "apps": app_code or [],
        }
        if price is not None:
            spec["price"] = price
        if percent_off is not None:
            spec["percent_off"] = percent_off
        items = [(code, bundles.parse_spec(spec))]
    with session_scope() as s:
        results = [(c, bundles.apply(s, c, sp)[0]) for c, sp in items]
    if output is Format.table:
        for c, outcome in results:
            success(f"bundle {c} {outcome}")
    else:
        render([{"code": c, "outcome": o} for c, o in results], output)


@app.command("list")
def list_(
    archived: Annotated[bool, typer.Option("--archived", help="Archived ones too.")] = False,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List bundles by code (on sale; --archived: all)."""
    from mno.billing import bundles
    from mno.store.db import session_scope

    def shown(b: Any) -> dict[str, Any]:
        row = bundles.view(b)
        if output is Format.table:
            row["plans"], row["apps"] = ", ".join(row["plans"]), ", ".join(row["apps"])
        return row

    with session_scope(write=False) as s:
        if all_:
            found = bundles.stream_bundles(s, archived=archived, after=after)
            render_stream((shown(b) for b in found), output, columns=COLUMNS)
            return
        page = bundles.page_bundles(s, archived=archived, after=after, limit=limit)
        rows = [shown(b) for b in page.rows]
    render_page(rows, page.next, output, columns=COLUMNS)


@app.command("show")
def show(
    code: Annotated[str, typer.Argument(help="Bundle code.")], output: OutputOpt = Format.table
) -> None:
    """Show one bundle with its parts and pricing."""
    from mno.billing import bundles
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        data = bundles.view(bundles.get(s, code))
    render(data, output)


@app.command("archive")
def archive(
    code: Annotated[str, typer.Argument(help="Bundle code.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Archive a bundle: removes it from sale (its subscriptions carry on)."""
    from mno.billing import bundles
    from mno.store.db import session_scope

    confirm(f"archive bundle {code}", yes)
    with session_scope() as s:
        data = bundles.view(bundles.archive(s, code))
    done(data, f"bundle {code} archived", output)
