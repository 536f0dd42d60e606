"""mno usage: record one event, import a CSV/JSONL file atomically.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mno.cli.billing import aware_time
from mno.cli.output import Format, OutputOpt, counter, done
from mno.cli.params import DryRunOpt, pairs, write_session
from mno.money import to_decimal

app = typer.Typer(help="Usage events for metered charges.", no_args_is_help=True)


@app.command("record")
def record(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    metric: Annotated[str, typer.Argument(help="Metric code.")],
    quantity: Annotated[str, typer.Argument(help="Quantity (decimal).")],
    at: Annotated[str | None, typer.Option(help="When (ISO time with zone).")] = None,
    key: Annotated[str | None, typer.Option("--id", help="Idempotency key.")] = None,
    prop: Annotated[list[str] | None, typer.Option("--prop", help="K=V; repeatable.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Record usage; a repeated --id is a no-op."""
    from mno.billing import usage
    from mno.store.db import session_scope

    with session_scope() as s:
        event, created = usage.record(
            s,
            tenant,
            metric,
            to_decimal(quantity),
            at=aware_time(at),
            idempotency_key=key,
            properties=pairs(prop, "prop"),
        )
        data = {"id": str(event.id), "created": created, "quantity": str(event.quantity)}
    done(data, "usage recorded" if created else "usage already recorded (same --id)", output)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help=".csv or .jsonl: tenant,metric,quantity,at,id")],
    dry_run: DryRunOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Validate the whole file, then load it in one transaction (--dry-run: validate and
    count, write nothing)."""
    from mno.billing import usage

    with counter("importing usage") as on_progress, write_session(dry_run) as s:
        n = usage.import_file(s, file, on_progress=on_progress)
    if dry_run:
        done(
            {"imported": 0, "would_import": n, "dry_run": True},
            f"dry run: {n} usage events would be imported; nothing was written",
            output,
        )
        return
    done({"imported": n}, f"{n} usage events imported", output)
