"""mno billing plan and mno [billing] metric|coupon|tax-rate: create, list, show, update,
delete (create and update take -f YAML; create takes flags for simple cases).

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.output import (
    Format,
    OutputOpt,
    done,
    render,
    render_page,
    render_stream,
    success,
)
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm
from mno.errors import BadInput

COLUMNS = {
    "Plan": [
        "code",
        "version",
        "currency",
        "interval_unit",
        "interval_every",
        "trial_days",
        "charges",
    ],
    "Metric": ["code", "aggregation", "field"],
    "Coupon": ["code", "kind", "value", "currency", "duration", "periods"],
    "TaxRate": ["code", "country", "region", "rate", "inclusive"],
}


def _row(obj: Any, kind: str) -> dict[str, Any]:
    row = {c: getattr(obj, c) for c in COLUMNS[kind]}
    if kind == "Plan":
        row["charges"] = obj.charges if not isinstance(obj.charges, list) else len(obj.charges)
    return _with_money(row, kind)


def _with_money(data: dict[str, Any], kind: str) -> dict[str, Any]:
    """A plan's setup fee and a fixed coupon's value in the one money shape; a plan's
    charges stay as its document writes them (prices at full precision)."""
    from mno.money import Money

    if kind == "Plan" and data.get("setup_fee") is not None:
        data["setup_fee"] = Money.of(data["setup_fee"], data["currency"]).as_json()
    if kind == "Coupon" and data.get("kind") == "fixed" and data.get("currency"):
        data["value"] = Money.of(data["value"], data["currency"]).as_json()
    return data


def _apply_file(file: Path, kind: str, output: Format) -> None:
    from mno.billing import documents
    from mno.store.db import session_scope

    if not file.exists():
        raise BadInput(f"{file}: no such file")
    text = file.read_text()
    docs = documents.parse(text, str(file))
    wrong = [d.kind for d, _ in docs if d.kind != kind]
    if wrong:
        raise BadInput(f"{file}: expected {kind} documents, found {wrong[0]}")
    with session_scope() as s:
        results = [(d.metadata.name, documents.apply(s, d, spec)[0]) for d, spec in docs]
    if output is Format.table:
        for name, outcome in results:
            success(f"{kind} {name} {outcome}")
    else:
        render([{"name": n, "outcome": o} for n, o in results], output)


def _doc_from_flags(kind: str, name: str, flags: dict[str, Any]) -> str:
    import yaml

    spec = {k: v for k, v in flags.items() if v is not None}
    if kind == "Plan":
        amount = spec.pop("amount", None)
        every = spec.pop("every", 1)
        unit = spec.pop("interval", "month")
        spec["interval"] = {"unit": unit, "every": every}
        spec["charges"] = (
            [{"kind": "fixed", "amount": amount, "timing": "advance"}] if amount else []
        )
    return yaml.safe_dump({"kind": kind, "metadata": {"name": name}, "spec": spec})


def _apply_flags(kind: str, name: str, flags: dict[str, Any], output: Format) -> None:
    """Create from flags: the same path as ``-f``, through a one-document file."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(_doc_from_flags(kind, name, flags))
    try:
        _apply_file(Path(fh.name), kind, output)
    finally:
        Path(fh.name).unlink()


def make_app(kind: str, help_text: str) -> typer.Typer:
    app = typer.Typer(help=help_text, no_args_is_help=True)
    noun = kind.lower()

    @app.command("create")
    def create(
        name: Annotated[str | None, typer.Argument(help="Code (omit with -f).")] = None,
        file: Annotated[Path | None, typer.Option("-f", "--file", help="YAML documents.")] = None,
        currency: Annotated[str | None, typer.Option(help="Plan currency.")] = None,
        amount: Annotated[
            str | None, typer.Option(help="Plan: one fixed price in advance.")
        ] = None,
        interval: Annotated[str | None, typer.Option(help="Plan: interval unit.")] = None,
        aggregation: Annotated[str | None, typer.Option(help="Metric aggregation.")] = None,
        value: Annotated[str | None, typer.Option(help="Coupon value.")] = None,
        country: Annotated[str | None, typer.Option(help="Tax rate country.")] = None,
        rate: Annotated[str | None, typer.Option(help="Tax rate percent.")] = None,
        inclusive: Annotated[bool, typer.Option(help="Tax rate is inclusive.")] = False,
        output: OutputOpt = Format.table,
    ) -> None:
        """Create (or update) from a YAML file, or from flags for simple cases."""
        if file is not None:
            _apply_file(file, kind, output)
            return
        if not name:
            raise BadInput(f"give a {noun} code or -f FILE")
        flags: dict[str, dict[str, Any]] = {
            "Plan": {"currency": currency, "amount": amount, "interval": interval},
            "Metric": {"aggregation": aggregation},
            "Coupon": {"value": value, "kind": "percentage"},
            "TaxRate": {"country": country, "rate": rate, "inclusive": inclusive},
        }
        _apply_flags(kind, name, flags[kind], output)

    @app.command("update")
    def update(
        file: Annotated[Path, typer.Option("-f", "--file", help="YAML documents.")],
        output: OutputOpt = Format.table,
    ) -> None:
        """Apply YAML documents (a plan price change creates a new version)."""
        _apply_file(file, kind, output)

    @app.command("list")
    def list_(
        limit: LimitOpt = 100,
        after: AfterOpt = None,
        all_: AllOpt = False,
        output: OutputOpt = Format.table,
    ) -> None:
        """List them, by code."""
        from mno.billing import catalogue
        from mno.store.db import session_scope

        columns = COLUMNS[kind]
        with session_scope(write=False) as s:
            if all_:
                found = catalogue.stream_objects(s, kind, after=after)
                render_stream((_row(o, kind) for o in found), output, columns=columns)
                return
            page = catalogue.page_objects(s, kind, after=after, limit=limit)
            rows = [_row(o, kind) for o in page.rows]
        render_page(rows, page.next, output, columns=columns)

    @app.command("show")
    def show(
        name: Annotated[str, typer.Argument(help="Code.")], output: OutputOpt = Format.table
    ) -> None:
        """Show one (a plan: its current version with charges)."""
        from mno.billing import catalogue
        from mno.store import audit
        from mno.store.db import session_scope

        with session_scope(write=False) as s:
            data = _with_money(audit.snapshot(catalogue.get(s, kind, name)), kind)
        render(data, output)

    @app.command("delete")
    def delete(
        name: Annotated[str, typer.Argument(help="Code.")],
        yes: YesOpt = False,
        output: OutputOpt = Format.table,
    ) -> None:
        """Delete one (a plan: every version); refused while something still uses it."""
        from mno.billing import catalogue
        from mno.store.db import session_scope

        confirm(f"delete {noun} {name}", yes)
        with session_scope() as s:
            result = catalogue.delete(s, kind, name)
        done(result, f"{noun} {name} deleted", output)

    return app
