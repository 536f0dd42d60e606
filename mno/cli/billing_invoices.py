"""mno invoice: list, show, issue, pay, void, explain, export (json|csv|html)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render

app = typer.Typer(help="Invoices: issue, pay, void, explain, export.", no_args_is_help=True)
COLUMNS = ["id", "number", "tenant", "period", "status", "currency", "total"]


def _amt(minor: int, cur: str) -> str:
    from decimal import Decimal

    from mno.money import minor_units

    return str(Decimal(minor).scaleb(-minor_units(cur)))


def _row(s: Any, inv: Any) -> dict[str, Any]:
    from mno.tenancy import tenants

    return {
        "id": str(inv.id),
        "number": inv.number,
        "tenant": tenants.get(s, inv.tenant_id).key,
        "period": inv.period,
        "kind": inv.kind,
        "status": inv.status,
        "currency": inv.currency,
        "subtotal": _amt(inv.subtotal_minor, inv.currency),
        "discount": _amt(inv.discount_minor, inv.currency),
        "tax": _amt(inv.tax_minor, inv.currency),
        "credit": _amt(inv.credit_minor, inv.currency),
        "total": _amt(inv.total_minor, inv.currency),
        "tax_note": (inv.tax_detail or {}).get("note"),
        "paid": _amt(inv.paid_minor, inv.currency),
        "issued_at": inv.issued_at,
        "due_at": inv.due_at,
        "paid_at": inv.paid_at,
    }


def _lines(inv: Any, lines: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "description": ln.description,
            "kind": ln.kind,
            "quantity": ln.quantity,
            "unit_price": ln.unit_price,
            "proration": ln.proration,
            "amount": _amt(ln.amount_minor, inv.currency),
            "period_start": ln.period_start,
            "period_end": ln.period_end,
            "detail": ln.detail,
        }
        for ln in lines
    ]


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    status: Annotated[str | None, typer.Option(help="Status.")] = None,
    period: Annotated[str | None, typer.Option(help="Period YYYY-MM.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    output: OutputOpt = Format.table,
) -> None:
    """List invoices, newest first."""
    from mno.billing import invoices
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = [_row(s, i) for i in invoices.list_invoices(s, tenant, status, period, limit)]
    render(rows, output, columns=COLUMNS)


@app.command("show")
def show(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show an invoice and its lines."""
    from mno.billing import invoices
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        inv = invoices.get(s, invoice)
        data = _row(s, inv)
        lines = _lines(inv, invoices.lines(s, inv))
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
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        inv = invoices.get(s, invoice)
        data = _row(s, inv)
        lines = _lines(inv, invoices.lines(s, inv))
    if output is not Format.table:
        render({**data, "tax_detail": inv.tax_detail, "lines": lines}, output)
        return
    out = []
    for ln in lines:
        out.append(
            f"{ln['description']}: {ln['quantity']} x {ln['unit_price']}"
            f" x proration {ln['proration']} = {ln['amount']} {inv.currency}"
        )
        for t in ln["detail"].get("tiers", []):
            out.append(f"  tier {t}")
    out.append(
        f"subtotal {data['subtotal']} - discounts {data['discount']} + tax {data['tax']}"
        f" {inv.tax_detail or ''} = total {data['total']} {inv.currency}"
    )
    typer.echo("\n".join(out))


@app.command("export")
def export(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html.")] = "json",
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE.")] = None,
) -> None:
    """Export an invoice as JSON, CSV lines or a printable HTML page."""
    import csv
    import io
    import json

    from mno.billing import invoices
    from mno.cli.output import to_jsonable
    from mno.errors import BadInput
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(write=False) as s:
        inv = invoices.get(s, invoice)
        data = _row(s, inv)
        lines = _lines(inv, invoices.lines(s, inv))
        tenant = tenants.get(s, inv.tenant_id)
        if fmt == "json":
            text = json.dumps(to_jsonable({**data, "lines": lines}), indent=2)
        elif fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["description", "quantity", "unit_price", "proration", "amount", "currency"])
            for ln in lines:
                w.writerow(
                    [
                        ln["description"],
                        ln["quantity"],
                        ln["unit_price"],
                        ln["proration"],
                        ln["amount"],
                        inv.currency,
                    ]
                )
            text = buf.getvalue()
        elif fmt == "html":
            import jinja2

            env = jinja2.Environment(
                loader=jinja2.PackageLoader("mno.billing", "templates"), autoescape=True
            )
            text = env.get_template("invoice.html.j2").render(
                inv=inv, tenant=tenant, lines=lines, t=data
            )
        else:
            raise BadInput("--format: json, csv or html")
    if out:
        out.write_text(text)
    else:
        typer.echo(text)


def _action(name: str, invoice: str, output: Format, **kw: Any) -> None:
    from mno.billing import invoices
    from mno.store.db import session_scope

    with session_scope() as s:
        inv = getattr(invoices, name)(s, invoice, **kw)
        data = _row(s, inv)
    done(data, f"invoice {data['number'] or data['id']} {data['status']}", output)


@app.command("issue")
def issue(
    invoice: Annotated[str, typer.Argument(help="Invoice id.")], output: OutputOpt = Format.table
) -> None:
    """Issue a draft: assigns the next gapless number."""
    _action("issue", invoice, output)


@app.command("pay")
def pay(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    amount: Annotated[str | None, typer.Option(help="Amount (default: what is due).")] = None,
    reference: Annotated[str | None, typer.Option(help="Payment reference.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Record a payment."""
    from mno.billing import invoices
    from mno.money import to_decimal, to_minor
    from mno.store.db import session_scope

    minor = None
    if amount is not None:
        with session_scope(write=False) as s:
            minor = to_minor(to_decimal(amount), invoices.get(s, invoice).currency)
    _action("pay", invoice, output, amount_minor=minor, reference=reference)


@app.command("void")
def void(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Void a draft, or an issued unpaid invoice (books a credit note)."""
    _action("void", invoice, output, reason=reason)
