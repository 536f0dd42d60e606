"""mno billing: ``run`` bills a period for every tenant (idempotent, resumable, dry-run);
the catalogue (plan, metric, coupon, tax-rate) and tax treatments hang under it.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mno.cli.billing.catalogue import make_app
from mno.cli.billing.tax_treatments import app as treatments
from mno.cli.follow import AsyncOpt, TimeoutOpt, WaitOpt
from mno.cli.output import Format, OutputOpt, counter, render, success, warn

if TYPE_CHECKING:
    from mno.billing.run import RunResult

app = typer.Typer(
    help="Billing runs and the catalogue (plan, metric, coupon, tax-rate).", no_args_is_help=True
)


def _catalogue() -> None:
    # ``mno plan`` is GitOps' plan command, so plans live here as ``mno billing plan``;
    # metric, coupon and tax-rate are also top-level groups.
    for kind, name in (
        ("Plan", "plan"),
        ("Metric", "metric"),
        ("Coupon", "coupon"),
        ("TaxRate", "tax-rate"),
    ):
        app.add_typer(make_app(kind, f"Catalogue: {name}s."), name=name)


_catalogue()


def _tax_treatments() -> None:
    app.add_typer(treatments, name="tax-treatment")


_tax_treatments()


def _bundles() -> None:
    from mno.cli.billing.bundles import app as bundles

    app.add_typer(bundles, name="bundle")


_bundles()


@app.command("run")
def run_cmd(
    period: Annotated[
        str | None,
        typer.Option(
            help="Month YYYY-MM that closed: bills the periods that close in it and the "
            "in-advance charges of the periods that start the month after. Default: the last "
            "month closed in every timezone."
        ),
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write nothing; print.")] = False,
    issue: Annotated[
        bool,
        typer.Option(
            "--issue",
            help="Issue the drafts billing runs wrote for the period (resumable: run the "
            "same command again after a crash).",
        ),
    ] = False,
    retry_failed: Annotated[str | None, typer.Option(help="Redo a run's failed tenants.")] = None,
    async_: AsyncOpt = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = "1h",
    output: OutputOpt = Format.table,
) -> None:
    """Bill a month: arrears and usage of the periods that closed in it, plus in-advance
    charges of the periods that start the next month (in each tenant's timezone).

    Tenants whose month has not closed yet in their timezone are skipped and listed with
    the moment it closes; exit 1 when no tenant could be billed. With --async the biller
    does the run (woken at once) and the request id is printed; --wait follows it."""
    from mno.billing import run as billing
    from mno.billing.periods import parse_period
    from mno.errors import BadInput

    if wait and not async_:
        raise BadInput("--wait goes with --async", "a run without --async waits anyway")
    if async_:
        if dry_run:
            raise BadInput("--dry-run cannot be queued", "run it without --async")
        if period:
            parse_period(period)
        _queue(period, tenant, issue, retry_failed, wait, timeout, output)
        return
    if retry_failed:
        result = billing.retry_failed(retry_failed)
    else:
        period = period or billing.default_period()
        result = _bill(period, tenant, dry_run)
    if issue and not dry_run and result.run_id:
        from mno.billing.issuing import issue_drafts

        if period:  # every run's drafts of the period, so a rerun finishes a crashed one
            result.issued = len(issue_drafts(period=period, from_runs_only=True))
        else:
            result.issued = len(issue_drafts(result.run_id))
    _render(result, period, dry_run, output)
    if result.refused:
        raise typer.Exit(1)


def _queue(
    period: str | None,
    tenant: str | None,
    issue: bool,
    retry_failed: str | None,
    wait: bool,
    timeout: str,
    output: Format,
) -> None:
    """Queue the run for the biller (``mno.store.requests``); with ``wait`` follow it."""
    from mno.cli.follow import run_async

    args = {"period": period, "tenant": tenant, "issue": issue, "retry_failed": retry_failed}
    run_async("billing_run", args, "biller", wait, timeout, output)


def _bill(period: str, tenant: str | None, dry_run: bool) -> RunResult:
    """The run, with a progress bar (tenants billed, rate) on a TTY."""
    from mno.billing import run as billing

    with counter(f"billing {period}") as on_progress:
        return billing.run(period, tenant_key=tenant, dry_run=dry_run, on_progress=on_progress)


def _render(result: RunResult, period: str | None, dry_run: bool, output: Format) -> None:
    from mno.money import money_fields, money_json

    data = result.as_dict()
    data["totals"] = {cur: money_json(v, cur) for cur, v in result.totals.items()}
    preview = [money_fields(row, row["currency"]) for row in result.preview]
    if dry_run:
        data["would_invoice"] = preview
    if output is not Format.table:
        render(data, output)
        return
    if result.not_closed:
        render(result.not_closed, output, columns=["tenant", "closes_at"], title="Not closed yet")
    if result.refused:
        warn(
            f"{period}: not billed, the period has not closed yet for any tenant to bill "
            f"({len(result.not_closed)})"
        )
        return
    if dry_run:
        render(preview, output, columns=["tenant", "subtotal", "discount", "tax", "total"])
    for f in result.failed:
        warn(f"{f['tenant']}: {f['reason']}")
    success(
        f"{period or ''} {result.tenants} tenants, {result.invoices} invoices, "
        f"{result.lines} lines, {result.late_events} late usage events "
        f"in {result.seconds:.1f}s" + (f"; run {result.run_id}" if result.run_id else " (dry run)")
    )
