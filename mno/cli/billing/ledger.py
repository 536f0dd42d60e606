"""mno ledger show TENANT: transactions with a running balance per currency.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.billing import aware_time
from mno.cli.output import Format, OutputOpt, done, render
from mno.money import check_currency, to_decimal, to_minor

app = typer.Typer(help="The billing ledger of a tenant.", no_args_is_help=True)


@app.command("show")
def show(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")], output: OutputOpt = Format.table
) -> None:
    """Every invoice, payment and credit with the running balance."""
    from mno.billing import ledger
    from mno.billing.export import amount as _amt
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = [
            {
                "seq": e.seq,
                "at": e.created_at,
                "type": e.type,
                "currency": e.currency,
                "amount": _amt(e.amount_minor, e.currency),
                "balance": _amt(e.balance_minor, e.currency),
                "reference": e.reference,
            }
            for e in ledger.entries(s, tenant)
        ]
    render(
        rows, output, columns=["seq", "at", "type", "currency", "amount", "balance", "reference"]
    )


@app.command("credit")
def credit(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    amount: Annotated[str, typer.Option(help="Amount, e.g. 20.00.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency.")],
    reference: Annotated[
        str | None, typer.Option("--reason", "--reference", help="Why (kept as its reference).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expiry (ISO time with zone); unused credit lapses.")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Add prepaid credit; invoices issued later in that currency draw it down after tax.
    With -o json/yaml: the ledger entry written."""
    from mno.billing import ledger
    from mno.billing.export import amount as _amt
    from mno.store.db import session_scope

    with session_scope() as s:
        e = ledger.add_credit(
            s,
            tenant,
            to_minor(to_decimal(amount), check_currency(currency)),
            currency,
            reference,
            expires_at=aware_time(expires),
        )
        data = {
            "id": str(e.id),
            "tenant": tenant,
            "seq": e.seq,
            "type": e.type,
            "amount": _amt(e.amount_minor, e.currency),
            "balance": _amt(e.balance_minor, e.currency),
            "reason": e.reference,
            "expires_at": e.expires_at,
            "created_at": e.created_at,
        }
    message = f"credit of {_amt(-e.amount_minor, e.currency)} {e.currency} added"
    done(data, f"{message}; balance {data['balance']}", output)


@app.command("credits")
def credits(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")], output: OutputOpt = Format.table
) -> None:
    """Prepaid credits with what is left of each and its expiry."""
    from mno.billing import ledger
    from mno.billing.export import amount as _amt
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = [
            {
                "id": str(g.id),
                "currency": g.currency,
                "amount": _amt(g.amount_minor, g.currency),
                "remaining": _amt(g.remaining_minor, g.currency),
                "expires_at": g.expires_at,
                "status": g.status,
                "reference": g.reference,
            }
            for g in ledger.list_credits(s, tenant)
        ]
    render(
        rows,
        output,
        columns=["id", "currency", "amount", "remaining", "expires_at", "status", "reference"],
    )
