"""mno audit: read the audit trail.

The store is imported inside the command: `mno audit --help` then starts without
SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, render_page, render_stream
from mno.cli.params import AfterOpt, AllOpt, LimitOpt

app = typer.Typer(help="Read the audit trail of every mutation.", no_args_is_help=True)


@app.command("list")
def list_(
    target: Annotated[str | None, typer.Option(help="Target key or id.")] = None,
    action: Annotated[
        str | None, typer.Option(help="Action key, e.g. tenant.create or tenant.*")
    ] = None,
    since: Annotated[str | None, typer.Option(help="24h, 7d or an ISO 8601 time.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List audit entries, newest first."""
    from mno.cli.params import since as parse_since
    from mno.store import audit
    from mno.store.db import session_scope

    def row(r: Any) -> dict[str, Any]:
        return {
            "id": r.id,
            "at": r.at,
            "actor": r.actor,
            "action": r.action,
            "target_type": r.target_type,
            "target": r.target,
            "target_id": r.target_id,
            "diff": r.diff,
        }

    columns = ["at", "actor", "action", "target", "diff"]
    start = parse_since(since)
    with session_scope(write=False) as s:
        if all_:
            found = audit.stream_entries(s, target=target, action=action, since=start, after=after)
            render_stream((row(r) for r in found), output, columns=columns, empty="No entries.")
            return
        page = audit.page_entries(
            s, target=target, action=action, since=start, after=after, limit=limit
        )
        data = [row(r) for r in page.rows]
    render_page(data, page.next, output, columns=columns, empty="No entries.")
