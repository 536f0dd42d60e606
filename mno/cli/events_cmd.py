"""mno events: read the outbox and the catalogue of event types.

The store, the catalogue and domain modules are imported inside the commands that use
them: `mno events --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, render

app = typer.Typer(help="Read platform events (the outbox).", no_args_is_help=True)


@app.command("list")
def list_(
    type: Annotated[str | None, typer.Option("--type", help="Event type, * wildcards.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    since: Annotated[str | None, typer.Option(help="24h, 7d or an ISO 8601 time.")] = None,
    after: Annotated[
        int | None,
        typer.Option(min=0, max=2**63 - 1, help="Only events after this seq, oldest first."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    output: OutputOpt = Format.table,
) -> None:
    """List events, newest first (or oldest first after --after)."""
    from mno.cli.params import since as parse_since
    from mno.store import outbox
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(write=False) as s:
        tenant_id = tenants.get(s, tenant).id if tenant else None
        rows = outbox.list_events(
            s,
            event_type=type,
            tenant_id=tenant_id,
            since=parse_since(since),
            after_seq=after,
            limit=limit,
        )
        data = [
            {
                "seq": e.seq,
                "id": e.id,
                "type": e.type,
                "tenant_id": e.tenant_id,
                "created_at": e.created_at,
                "payload": e.payload,
            }
            for e in rows
        ]
    render(data, output, columns=["seq", "created_at", "type", "payload"], empty="No events.")


@app.command("types")
def types(output: OutputOpt = Format.table) -> None:
    """Print the catalogue of event types."""
    from mno.events import CATALOGUE

    render(
        [{"type": k, "description": v} for k, v in sorted(CATALOGUE.items())],
        output,
        columns=["type", "description"],
    )
