"""mno charge: one-off charges (bills): add, list, show, cancel.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_page, render_stream
from mno.cli.params import AfterOpt, AllOpt, LimitOpt
from mno.money import to_decimal

app = typer.Typer(help="One-off charges billed by the next run.", no_args_is_help=True)
COLUMNS = ["id", "tenant", "amount", "currency", "status", "description"]


def _row(s: Any, c: Any) -> dict[str, Any]:
    from mno.billing.export import amount
    from mno.tenancy import tenants

    return {
        "id": str(c.id),
        "tenant": tenants.get(s, c.tenant_id).key,
        "amount": amount(c.amount_minor, c.currency),
        "currency": c.currency,
        "status": c.status,
        "description": c.description,
        "app": c.app_code,
    }


@app.command("add")
def add(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    amount: Annotated[str, typer.Option(help="Amount, e.g. 10.00.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency.")],
    description: Annotated[str, typer.Option(help="What it is for.")],
    key: Annotated[str | None, typer.Option("--id", help="Idempotency key.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Submit a one-off charge."""
    from mno.billing import charges
    from mno.store.db import session_scope

    with session_scope() as s:
        data = _row(
            s,
            charges.add(s, tenant, to_decimal(amount), currency, description, idempotency_key=key),
        )
    done(data, f"charge {data['id']} submitted", output)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    status: Annotated[str | None, typer.Option(help="Status.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List charges, newest first."""
    from mno.billing import charges
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        if all_:
            found = charges.stream_charges(s, tenant, status, after=after)
            render_stream((_row(s, c) for c in found), output, columns=COLUMNS)
            return
        page = charges.page_charges(s, tenant, status, after=after, limit=limit)
        rows = [_row(s, c) for c in page.rows]
    render_page(rows, page.next, output, columns=COLUMNS)


@app.command("show")
def show(
    charge_id: Annotated[str, typer.Argument(help="Charge id.")], output: OutputOpt = Format.table
) -> None:
    """Show one charge."""
    from mno.billing import charges
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        data = _row(s, charges.get(s, charge_id))
    render(data, output)


@app.command("cancel")
def cancel(
    charge_id: Annotated[str, typer.Argument(help="Charge id.")], output: OutputOpt = Format.table
) -> None:
    """Cancel a charge that is not invoiced yet."""
    from mno.billing import charges
    from mno.store.db import session_scope

    with session_scope() as s:
        data = _row(s, charges.cancel(s, charge_id))
    done(data, f"charge {charge_id} cancelled", output)
