"""mno subscription: create, list, show, cancel, change-plan.

A bundle subscription (``create TENANT --bundle CODE``) is shown, cancelled and changed by
its own id, as one; its part subscriptions refuse to be cancelled or changed alone.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.billing import aware_time
from mno.cli.output import Format, OutputOpt, done, render, render_page, render_stream
from mno.cli.params import AfterOpt, AllOpt, LimitOpt
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
        "bundle_subscription": (
            str(sub.bundle_subscription_id) if sub.bundle_subscription_id else None
        ),
    }


def _one_of(now: bool, at_period_end: bool, at: str | None) -> None:
    if now + at_period_end + (at is not None) > 1:
        raise BadInput("give one of --now, --at-period-end and --at", "they exclude each other")


@app.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    plan: Annotated[str | None, typer.Argument(help="Plan code (omit with --bundle).")] = None,
    bundle: Annotated[
        str | None, typer.Option("--bundle", help="Subscribe to this bundle instead.")
    ] = None,
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
    """Subscribe TENANT to the current version of PLAN, or to a bundle (--bundle).

    With --app naming a Nex app, a tenant already provisioned in a docker-mode tier gets
    the app's instance in the same transaction (or its stopped one started again)."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.cli.remote import unsupported
        from mno.remote import billing as remote

        if bundle is not None or start is not None:
            unsupported("--bundle" if bundle is not None else "--start")
        if plan is None:
            raise BadInput("give a PLAN")
        fields = {
            "plan": plan,
            "app": app_code,
            "coupon": coupon,
            "cycle_limit": cycles,
            "invoice_now": invoice_now,
        }
        made = remote.subscribe(client, tenant, fields)
        done(made, f"subscription {made['id']} created", output)
        return
    from mno.billing import subscriptions
    from mno.store.db import session_scope

    if bundle is not None:
        _create_bundle(tenant, plan, bundle, start, app_code, coupon, cycles, invoice_now, output)
        return
    if plan is None:
        raise BadInput("give a PLAN or --bundle CODE")
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


def _create_bundle(
    tenant: str,
    plan: str | None,
    bundle: str,
    start: str | None,
    *unsupported: Any,
) -> None:
    from mno.billing import bundles
    from mno.store.db import session_scope

    *flags, output = unsupported
    if plan is not None:
        raise BadInput("give a PLAN or --bundle CODE", "not both")
    if any(flags):
        raise BadInput("--bundle takes no --app, --coupon, --cycles or --invoice-now")
    with session_scope() as s:
        bs = bundles.subscribe(s, tenant, bundle, start=aware_time(start))
        data = bundles.subscription_view(s, bs)
    done(data, f"bundle subscription {data['id']} created", output)


def _bundle_sub(s: Any, sub_id: str) -> Any:
    from mno.billing import bundles

    return bundles.find_subscription(s, sub_id)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    status: Annotated[str | None, typer.Option(help="Status.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List subscriptions, oldest first."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import billing as remote

        if tenant is None:
            raise BadInput("--tenant is required with --server")
        if all_:
            render_stream(
                remote.subscriptions(client, tenant, status=status), output, columns=COLUMNS
            )
            return
        subs, cursor = remote.subscription_page(
            client, tenant, limit=limit, after=after, status=status
        )
        render_page(subs, cursor, output, columns=COLUMNS)
        return
    from mno.billing import subscriptions
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        if all_:
            found = subscriptions.stream_subscriptions(s, tenant, status, after=after)
            render_stream((_row(s, x) for x in found), output, columns=COLUMNS)
            return
        page = subscriptions.page_subscriptions(s, tenant, status, after=after, limit=limit)
        rows = [_row(s, x) for x in page.rows]
    render_page(rows, page.next, output, columns=COLUMNS)


@app.command("show")
def show(
    sub_id: Annotated[str, typer.Argument(help="Subscription id.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show one subscription (a bundle subscription: with its parts)."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import billing as remote

        render(remote.get_subscription(client, sub_id), output)
        return
    from mno.billing import bundles, subscriptions
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        bs = _bundle_sub(s, sub_id)
        if bs is not None:
            data = bundles.subscription_view(s, bs)
        else:
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
    end: no proration. Plan changes scheduled at the subscription's end are cancelled too.
    A bundle subscription is cancelled with all its parts; a part cannot be alone.
    Ended now, a subscription to a Nex app stops the tenant's instances of the app unless
    its tier or another subscription keeps it; their data stays until `mno instance
    terminate`."""
    from mno.cli.params import confirm
    from mno.cli.remote import hub

    _one_of(now, at_period_end, at)
    confirm(f"cancel subscription {sub_id}", yes)
    if (client := hub()) is not None:
        from mno.cli.remote import unsupported
        from mno.remote import billing as remote

        if at is not None:
            unsupported("--at")
        data = remote.cancel(client, sub_id, at_period_end=at_period_end, credit=not no_credit)
        ends = "canceled" if data["status"] == "canceled" else f"ends at {data.get('cancel_at')}"
        done(data, f"subscription {sub_id} {ends}", output)
        return
    from mno.billing import bundles, subscriptions
    from mno.store.db import session_scope

    with session_scope() as s:
        if _bundle_sub(s, sub_id) is not None:
            when, is_period_end = aware_time(at), at_period_end
            bs = bundles.cancel(
                s, sub_id, at=when, at_period_end=is_period_end, credit=not no_credit
            )
            data = bundles.subscription_view(s, bs)
            ends = "canceled" if bs.status == "canceled" else f"ends at {data['cancel_at']}"
            done(data, f"bundle subscription {sub_id} {ends}", output)
            return
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
    proration. At a time: both sides prorated by day, billed by the runs. A bundle
    subscription moves to another bundle (PLAN is then a bundle code), parts and all."""
    from mno.billing import bundles, subscriptions
    from mno.store.db import session_scope

    _one_of(now, at_period_end, at)
    with session_scope() as s:
        if _bundle_sub(s, sub_id) is not None:
            bs = bundles.change(s, sub_id, plan, at=aware_time(at), at_period_end=at_period_end)
            data = bundles.subscription_view(s, bs)
            done(data, f"bundle subscription {data['id']} on {plan}", output)
            return
        data = _row(
            s,
            subscriptions.change_plan(
                s, sub_id, plan, at=aware_time(at), at_period_end=at_period_end
            ),
        )
    done(data, f"subscription {data['id']} on {plan}", output)
