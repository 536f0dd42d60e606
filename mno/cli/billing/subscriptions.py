"""mno subscription: create, list, show, cancel, change-plan.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.billing import aware_time
from mno.cli.output import Format, OutputOpt, done, render
from mno.errors import BadInput
from mno.money import money_json

app = typer.Typer(help="Subscriptions of tenants to plans.", no_args_is_help=True)
COLUMNS = ["id", "tenant", "plan", "status", "started_at", "cancel_at"]


def _row(s: Any, sub: Any) -> dict[str, Any]:
    from mno.tenancy import tenants

    return {
        "id": str(sub.id),
        "tenant": tenants.get(s, sub.tenant_id).key,
        "plan": sub.plan_code,
        "status": sub.status,
        "started_at": sub.started_at,
        "cancel_at": sub.cancel_at,
        "coupon": sub.coupon_code,
        "cycle_limit": sub.cycle_limit,
    }


def _one_of(now: bool, at_period_end: bool, at: str | None) -> None:
    if now + at_period_end + (at is not None) > 1:
        raise BadInput("give one of --now, --at-period-end and --at", "they exclude each other")


@app.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    plan: Annotated[str, typer.Argument(help="Plan code.")],
    start: Annotated[str | None, typer.Option(help="Start (ISO time with zone).")] = None,
    app_code: Annotated[str | None, typer.Option("--app", help="App code.")] = None,
    coupon: Annotated[str | None, typer.Option(help="Coupon code.")] = None,
    cycles: Annotated[
        int | None, typer.Option(help="Cycle limit: bill at most this many periods.")
    ] = None,
    invoice_now: Annotated[
        bool,
        typer.Option(
            "--invoice-now", help="Bill the first in-advance charges now (a draft invoice)."
        ),
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Subscribe TENANT to the current version of PLAN."""
    from mno.billing import subscriptions
    from mno.store.db import session_scope

    with session_scope() as s:
        sub = subscriptions.create(
            s,
            tenant,
            plan,
            start=aware_time(start),
            app_code=app_code,
            coupon=coupon,
            cycle_limit=cycles,
            invoice_now=invoice_now,
        )
        data = _row(s, sub)
        inv = subscriptions.first_invoice(s, sub) if invoice_now else None
        if invoice_now:
            data["invoice"] = str(inv.id) if inv else None
            data["invoice_total"] = money_json(inv.total_minor, inv.currency) if inv else None
    message = f"subscription {data['id']} created"
    if invoice_now:
        message += f"; invoice {data['invoice']}" if data["invoice"] else "; nothing to invoice"
    done(data, message, output)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    status: Annotated[str | None, typer.Option(help="Status.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """List subscriptions."""
    from mno.billing import subscriptions
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = [_row(s, x) for x in subscriptions.list_subscriptions(s, tenant, status)]
    render(rows, output, columns=COLUMNS)


@app.command("show")
def show(
    sub_id: Annotated[str, typer.Argument(help="Subscription id.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show one subscription."""
    from mno.billing import subscriptions
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        data = _row(s, subscriptions.get(s, sub_id))
    render(data, output)


@app.command("cancel")
def cancel(
    sub_id: Annotated[str, typer.Argument(help="Subscription id.")],
    now: Annotated[bool, typer.Option("--now", help="Cancel now (the default).")] = False,
    at_period_end: Annotated[
        bool, typer.Option("--at-period-end", help="Cancel when the current period ends.")
    ] = False,
    at: Annotated[str | None, typer.Option(help="Cancel at this time (ISO, with zone).")] = None,
    no_credit: Annotated[
        bool,
        typer.Option(
            "--no-credit", help="Keep what was billed in advance: no credit for unused days."
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask for confirmation (required off a terminal)."),
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Cancel now, at a given time or at the end of the current period.

    Now or at a time: fixed charges are prorated by day in the tenant's timezone, and the
    unused part of those already billed in advance becomes a prepaid credit on the
    tenant's ledger, drawn down by the next invoice (``--no-credit``: none). At period
    end: no proration. Plan changes scheduled at the subscription's end are cancelled too."""
    from mno.billing import subscriptions
    from mno.cli.params import confirm
    from mno.store.db import session_scope

    _one_of(now, at_period_end, at)
    confirm(f"cancel subscription {sub_id}", yes)
    with session_scope() as s:
        data = _row(
            s,
            subscriptions.cancel(
                s,
                sub_id,
                at=aware_time(at),
                at_period_end=at_period_end,
                credit=not no_credit,
            ),
        )
    ends = "canceled" if data["status"] == "canceled" else f"ends at {data['cancel_at']}"
    done(data, f"subscription {sub_id} {ends}", output)


@app.command("change-plan")
def change_plan(
    sub_id: Annotated[str, typer.Argument(help="Subscription id.")],
    plan: Annotated[str, typer.Argument(help="New plan code.")],
    now: Annotated[bool, typer.Option("--now", help="Change now (the default).")] = False,
    at_period_end: Annotated[
        bool, typer.Option("--at-period-end", help="Change when the current period ends.")
    ] = False,
    at: Annotated[str | None, typer.Option(help="Change at this time (ISO, with zone).")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Move to another plan (a new subscription from the change on).

    Now: the unused part of the old plan's fixed charges already billed becomes a prepaid
    credit and the new plan's in-advance charges for the rest of the period are billed at
    once (a draft invoice), prorated by day in the tenant's timezone. At period end: no
    proration. At a time: both sides prorated by day, billed by the runs."""
    from mno.billing import subscriptions
    from mno.store.db import session_scope

    _one_of(now, at_period_end, at)
    with session_scope() as s:
        data = _row(
            s,
            subscriptions.change_plan(
                s, sub_id, plan, at=aware_time(at), at_period_end=at_period_end
            ),
        )
    done(data, f"subscription {data['id']} on {plan}", output)
