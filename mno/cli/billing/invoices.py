"""mno invoice: list, show, issue, pay, void, explain, export (json|csv|html).

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render
from mno.errors import BadInput
from mno.money import to_decimal

app = typer.Typer(help="Invoices: issue, pay, void, explain, export.", no_args_is_help=True)
COLUMNS = ["id", "number", "tenant", "period", "status", "currency", "total"]


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    status: Annotated[str | None, typer.Option(help="Status.")] = None,
    period: Annotated[str | None, typer.Option(help="Period YYYY-MM.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    output: OutputOpt = Format.table,
) -> None:
    """List invoices, newest first."""
    from mno.billing import invoices
    from mno.billing.export import summary
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = [summary(s, i) for i in invoices.list_invoices(s, tenant, status, period, limit)]
    render(rows, output, columns=COLUMNS)


@app.command("show")
def show(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show an invoice and its lines."""
    from mno.billing import invoices
    from mno.billing.export import view
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        data, lines = view(s, invoices.get(s, invoice))
    if output is Format.table:
        render(data, output)
        render(
            lines, output, columns=["description", "quantity", "unit_price", "proration", "amount"]
        )
    else:
        render({**data, "lines": lines}, output)


@app.command("explain")
def explain(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    output: OutputOpt = Format.table,
) -> None:
    """How each line was computed: quantity, tiers, proration, then discount, tax, total."""
    from mno.billing import invoices
    from mno.billing.export import explain_text, view
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        inv = invoices.get(s, invoice)
        data, lines = view(s, inv)
        text = explain_text(inv, data, lines)
    if output is not Format.table:
        render({**data, "tax_detail": inv.tax_detail, "lines": lines}, output)
        return
    typer.echo(text)


@app.command("export")
def export(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html.")] = "json",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to FILE.")] = None,
) -> None:
    """Export an invoice as JSON, CSV lines or a printable HTML page."""
    from mno.billing.export import export as render_invoice
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        text = render_invoice(s, invoice, fmt)
    if out:
        out.write_text(text)
    else:
        typer.echo(text, nl=not text.endswith("\n"))


def _action(name: str, invoice: str, output: Format, **kw: Any) -> None:
    from mno.billing import invoices
    from mno.billing.export import summary
    from mno.store.db import session_scope

    with session_scope() as s:
        inv = getattr(invoices, name)(s, invoice, **kw)
        data = summary(s, inv)
    done(data, f"invoice {data['number'] or data['id']} {data['status']}", output)


@app.command("issue")
def issue(
    invoice: Annotated[str | None, typer.Argument(help="Invoice id.")] = None,
    all_drafts: Annotated[
        bool, typer.Option("--all-drafts", help="Issue every draft (of --period if given).")
    ] = False,
    period: Annotated[
        str | None, typer.Option(help="With --all-drafts: only this period (YYYY-MM).")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Issue a draft, or every draft with --all-drafts: assigns the next gapless number.

    Each invoice is issued in its own transaction, so after an interruption the same
    command issues what is left."""
    if all_drafts == (invoice is not None):
        raise BadInput("give an invoice id, or --all-drafts")
    if period and not all_drafts:
        raise BadInput("--period goes with --all-drafts")
    if invoice is not None:
        _action("issue", invoice, output)
        return
    from mno.billing.issuing import issue_drafts

    issued = issue_drafts(period=period)
    done(
        {"issued": len(issued), "ids": [str(i) for i in issued]},
        f"{len(issued)} draft(s) issued",
        output,
    )


@app.command("pay")
def pay(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    amount: Annotated[str | None, typer.Option(help="Amount (default: what is due).")] = None,
    reference: Annotated[str | None, typer.Option(help="Payment reference.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Record a payment."""
    paid = to_decimal(amount) if amount is not None else None
    _action("pay", invoice, output, amount=paid, reference=reference)


@app.command("void")
def void(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask for confirmation (required off a terminal)."),
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Void a draft, or an issued unpaid invoice (books a credit note)."""
    from mno.cli.params import confirm

    confirm(f"void invoice {invoice}", yes)
    _action("void", invoice, output, reason=reason)
