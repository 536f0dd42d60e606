"""mno events: read the outbox and the catalogue of event types.

The store, the catalogue and domain modules are imported inside the commands that use
them: `mno events --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, render, render_page, render_stream
from mno.cli.params import AllOpt, LimitOpt

app = typer.Typer(help="Read platform events (the outbox).", no_args_is_help=True)


@app.command("list")
def list_(
    type: Annotated[str | None, typer.Option("--type", help="Event type, * wildcards.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    since: Annotated[str | None, typer.Option(help="24h, 7d or an ISO 8601 time.")] = None,
    limit: LimitOpt = 100,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="CURSOR",
            help="A sequence number: the events after it, oldest first (follows the "
            "outbox, never skipping an event that commits late); or the cursor printed "
            "after a page, to continue it.",
        ),
    ] = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List events, newest first (oldest first after a sequence number)."""
    from mno.cli.params import since as parse_since
    from mno.store import outbox
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    def row(e: Any) -> dict[str, Any]:
        return {
            "seq": e.seq,
            "id": e.id,
            "type": e.type,
            "tenant_id": e.tenant_id,
            "created_at": e.created_at,
            "payload": e.payload,
        }

    columns = ["seq", "created_at", "type", "payload"]
    start = parse_since(since)
    with session_scope(write=False) as s:
        tenant_id = tenants.get(s, tenant).id if tenant else None
        if all_:
            found = outbox.stream_events(
                s, event_type=type, tenant_id=tenant_id, since=start, after=after
            )
            render_stream((row(e) for e in found), output, columns=columns, empty="No events.")
            return
        page = outbox.page_events(
            s, event_type=type, tenant_id=tenant_id, since=start, after=after, limit=limit
        )
        data = [row(e) for e in page.rows]
    render_page(data, page.next, output, columns=columns, empty="No events.")


@app.command("types")
def types(output: OutputOpt = Format.table) -> None:
    """Print the catalogue of event types."""
    from mno.events import CATALOGUE

    render(
        [{"type": k, "description": v} for k, v in sorted(CATALOGUE.items())],
        output,
        columns=["type", "description"],
    )
