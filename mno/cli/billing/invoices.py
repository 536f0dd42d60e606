"""mno invoice: list, show, create, line add/edit/remove, issue, pay, credit, void,
explain, export (json|csv|html|pdf).

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_page, render_stream
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm
from mno.errors import BadInput
from mno.money import to_decimal, to_minor

app = typer.Typer(
    help="Invoices: create, issue, pay, credit, void, explain, export.", no_args_is_help=True
)
COLUMNS = ["id", "number", "tenant", "period", "status", "total", "amount_due"]


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    status: Annotated[str | None, typer.Option(help="Status.")] = None,
    period: Annotated[str | None, typer.Option(help="Period YYYY-MM.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List invoices, newest first."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import billing as remote

        if tenant is None:
            raise BadInput("--tenant is required with --server")
        if all_:
            every = remote.invoices(client, tenant, status=status, period=period)
            render_stream(every, output, columns=COLUMNS)
            return
        page_rows, cursor = remote.invoice_page(
            client, tenant, limit=limit, after=after, status=status, period=period
        )
        render_page(page_rows, cursor, output, columns=COLUMNS)
        return
    from mno.billing import invoices
    from mno.billing.export import summary
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        if all_:
            found = invoices.stream_invoices(s, tenant, status, period, after=after)
            render_stream((summary(s, i) for i in found), output, columns=COLUMNS)
            return
        page = invoices.page_invoices(s, tenant, status, period, after=after, limit=limit)
        rows = [summary(s, i) for i in page.rows]
    render_page(rows, page.next, output, columns=COLUMNS)


@app.command("show")
def show(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show an invoice and its lines."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import billing as remote

        data = remote.invoice(client, invoice)
        lines = data.pop("lines", [])
    else:
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
    fmt: Annotated[
        str, typer.Option("--format", "--output", "-o", help="json, csv, html or pdf.")
    ] = "json",
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE.")] = None,
) -> None:
    """Export an invoice or credit note as JSON, CSV lines, a printable HTML page or a PDF."""
    if "." in fmt or "/" in fmt:
        raise BadInput(
            f"-o {fmt}: -o is the format (json, csv, html or pdf)", "write to FILE with --out FILE"
        )
    from mno.billing.export import export as render_invoice
    from mno.store.db import session_scope

    if fmt == "pdf":
        _export_pdf(invoice, out)
        return
    with session_scope(write=False) as s:
        text = render_invoice(s, invoice, fmt)
    if out:
        out.write_text(text)
    else:
        typer.echo(text, nl=not text.endswith("\n"))


def _export_pdf(invoice: str, out: Path | None) -> None:
    import sys

    from mno.billing import export, invoice_pdf, invoices
    from mno.store.db import session_scope

    if out is None and sys.stdout.isatty():
        raise BadInput("a PDF is not written to a terminal", "give --out FILE, or redirect")
    with session_scope(write=False) as s:
        page, directory = export.page(s, invoices.get(s, invoice))
    data = invoice_pdf.render_pdf(page, directory)
    if out:
        out.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


def _action(name: str, invoice: str, output: Format, **kw: Any) -> None:
    from mno.billing import credit_notes, invoices
    from mno.billing.export import summary
    from mno.store.db import session_scope

    module = credit_notes if name == "void" else invoices
    with session_scope() as s:
        inv = getattr(module, name)(s, invoice, **kw)
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
    amount: Annotated[
        str | None,
        typer.Option(help="Amount received (default: what is due); beyond it becomes credit."),
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="How it was paid, e.g. bank_transfer, card.")
    ] = None,
    reference: Annotated[str | None, typer.Option(help="Payment reference.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Record a payment: in part (the invoice is then partially_paid), in full, or more
    (the excess goes to the tenant's credit balance, drawn by the next invoice)."""
    from mno.billing import invoices
    from mno.billing.export import payment_view
    from mno.store.db import session_scope

    with session_scope() as s:
        inv = invoices.get(s, invoice)
        paid = to_minor(to_decimal(amount), inv.currency) if amount is not None else None
        payment = invoices.record_payment(s, invoice, paid, method=method, reference=reference)
        data = payment_view(s, payment)
    message = f"invoice {data['number'] or data['id']} {data['status'].replace('_', ' ')}"
    if data["status"] != "paid":
        message += f"; {data['amount_due']} {data['currency']} due"
    if payment.overpaid_minor:
        message += f"; {data['payment']['overpaid']} {data['currency']} to the tenant's credit"
    done(data, message, output)


@app.command("void")
def void(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number.")],
    reason: Annotated[str | None, typer.Option(help="Why.")] = None,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Void a draft, or an issued unpaid invoice (books a credit note)."""
    confirm(f"void invoice {invoice}", yes)
    _action("void", invoice, output, reason=reason)


@app.command("credit")
def credit(
    invoice: Annotated[str, typer.Argument(help="Invoice id or number (issued or paid).")],
    reason: Annotated[str, typer.Option(help="Why the tenant is credited.")],
    line: Annotated[
        int | None, typer.Option(min=1, help="Credit this line (as invoice show lists them).")
    ] = None,
    amount: Annotated[
        str | None, typer.Option(help="Credit this amount before tax (default: all left).")
    ] = None,
    refund: Annotated[
        bool, typer.Option("--refund", help="Return the money (default: to the balance).")
    ] = False,
    method: Annotated[
        str | None, typer.Option(help="With --refund: how, e.g. bank_transfer, card.")
    ] = None,
    reference: Annotated[str | None, typer.Option(help="With --refund: its reference.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Book a credit note against an issued or paid invoice, all of it or part of a line
    or of the invoice; tax is reversed in proportion. The credit goes to the tenant's
    balance (drawn by the next invoice), or back to the tenant with --refund."""
    from mno.billing import credit_notes
    from mno.billing.export import credit_view
    from mno.store.db import session_scope

    value = to_decimal(amount) if amount is not None else None
    with session_scope() as s:
        booked = credit_notes.credit(
            s,
            invoice,
            reason=reason,
            line=line,
            amount=value,
            refund=refund,
            method=method,
            reference=reference,
        )
        data = credit_view(s, booked.note, booked.refund)
    way = f"refunded by {data['refund']['method']}" if data["refund"] else "to the tenant's balance"
    done(
        data,
        f"credit note {data['number']} for {data['credit_note_for']}:"
        f" {data['total']} {data['currency']}, {way}",
        output,
    )


def _show_changed(inv_id: str, message: str, output: Format) -> None:
    from mno.billing import invoices
    from mno.billing.export import view
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        data, lines = view(s, invoices.get(s, inv_id))
    label = data["number"] or data["id"]
    done({**data, "lines": lines}, message.format(label=label, **data), output)


@app.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    line: Annotated[
        list[str],
        typer.Option(
            "--line",
            help='A line "description:quantity:unit_price[:tax_code]" (repeat the option).',
        ),
    ],
    currency: Annotated[str | None, typer.Option(help="Currency (default: the tenant's).")] = None,
    issue: Annotated[bool, typer.Option("--issue", help="Issue it at once.")] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Create a manual invoice for one-off work: a draft, or issued with --issue. It is
    numbered, taxed and rendered like the invoices of a billing run."""
    from mno.billing import manual
    from mno.store.db import session_scope

    specs = [manual.parse_line(x) for x in line]
    with session_scope() as s:
        inv_id = str(manual.create(s, tenant, specs, currency=currency, issue=issue).id)
    _show_changed(inv_id, "invoice {label} {status}: total {total} {currency}", output)


line_app = typer.Typer(help="Change the lines of a draft invoice.", no_args_is_help=True)
app.add_typer(line_app, name="line")


@line_app.command("add")
def line_add(
    invoice: Annotated[str, typer.Argument(help="Draft invoice id.")],
    spec: Annotated[
        str,
        typer.Argument(
            help='"description:quantity:unit_price[:tax_code]"; a negative price reduces.'
        ),
    ],
    output: OutputOpt = Format.table,
) -> None:
    """Add a line to a draft; its totals and tax are computed again."""
    from mno.billing import manual
    from mno.store.db import session_scope

    parsed = manual.parse_line(spec, negative=True)
    with session_scope() as s:
        inv_id = str(manual.add_line(s, invoice, parsed).id)
    _show_changed(inv_id, "line added: total {total} {currency}", output)


@line_app.command("edit")
def line_edit(
    invoice: Annotated[str, typer.Argument(help="Draft invoice id.")],
    n: Annotated[int, typer.Argument(help="Line number, as invoice show lists them.")],
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
    quantity: Annotated[str | None, typer.Option(help="New quantity.")] = None,
    unit_price: Annotated[str | None, typer.Option(help="New unit price.")] = None,
    tax_code: Annotated[str | None, typer.Option(help="Tax this line at this rate.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change a line of a draft: its amount becomes quantity x unit price."""
    from mno.billing import manual
    from mno.store.db import session_scope

    qty = to_decimal(quantity) if quantity is not None else None
    price = to_decimal(unit_price) if unit_price is not None else None
    with session_scope() as s:
        inv_id = str(
            manual.edit_line(
                s,
                invoice,
                n,
                description=description,
                quantity=qty,
                unit_price=price,
                tax_code=tax_code,
            ).id
        )
    _show_changed(inv_id, "line changed: total {total} {currency}", output)


@line_app.command("remove")
def line_remove(
    invoice: Annotated[str, typer.Argument(help="Draft invoice id.")],
    n: Annotated[int, typer.Argument(help="Line number, as invoice show lists them.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Remove a line of a draft."""
    from mno.billing import manual
    from mno.store.db import session_scope

    confirm(f"remove line {n} of invoice {invoice}", yes)
    with session_scope() as s:
        inv_id = str(manual.remove_line(s, invoice, n).id)
    _show_changed(inv_id, "line removed: total {total} {currency}", output)
