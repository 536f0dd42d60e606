"""mno audit: read the audit trail.

The store and ``mno.cli.params`` are imported inside the command: `mno audit --help`
then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, render

app = typer.Typer(help="Read the audit trail of every mutation.", no_args_is_help=True)


@app.command("list")
def list_(
    target: Annotated[str | None, typer.Option(help="Target key or id.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Action key, e.g. tenant.create or tenant.*")
    ] = None,
    since: Annotated[str | None, typer.Option(help="24h, 7d or an ISO 8601 time.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
    output: OutputOpt = Format.table,
) -> None:
    """List audit entries, newest first."""
    from mno.cli.params import since as parse_since
    from mno.store import audit
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = audit.list_entries(
            s, target=target, action=action, since=parse_since(since), limit=limit
        )
        data = [
            {
                "id": r.id,
                "at": r.at,
                "actor": r.actor,
                "action": r.action,
                "target_type": r.target_type,
                "target": r.target,
                "target_id": r.target_id,
                "diff": r.diff,
            }
            for r in rows
        ]
    render(data, output, columns=["at", "actor", "action", "target", "diff"], empty="No entries.")
