"""mno record: read, filter and write a tenant's canonical records (Connec from the CLI).

``list``, ``show`` and ``history`` are the sync engine's; ``list`` with ``--filter``,
``--orderby``, ``--select`` or ``--updated-since`` pages one tenant's records through the
Connec query path. ``get``, ``put`` and ``delete`` write and read like the Connec API,
as the operator or, with ``--app``, as that app (its own ids, its source).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, render, render_page, render_stream
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm
from mno.cli.sync import record_app as app
from mno.cli.sync import record_list as sync_record_list
from mno.errors import BadInput, Conflict, NotFound

TenantOpt = Annotated[str, typer.Option("--tenant", help="The tenant whose records these are.")]
AppOpt = Annotated[
    str | None, typer.Option("--app", help="Act as this app (its own ids, its source).")
]
IfMatchOpt = Annotated[
    int | None, typer.Option("--if-match", help="The record's version: refused when it moved on.")
]


def _data(text: str) -> dict[str, Any]:
    """``--data``: JSON text, ``@file`` or ``-`` (stdin)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise BadInput(f"cannot read {text[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"--data is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput("--data must be a JSON object")
    return data


@app.command("list")
def record_list(
    entity: str,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    filter_: Annotated[
        str | None,
        typer.Option("--filter", help="e.g. \"total_amount gt 100 and status eq 'paid'\""),
    ] = None,
    orderby: Annotated[
        str | None, typer.Option("--orderby", help="e.g. 'name, amount desc'.")
    ] = None,
    select: Annotated[str | None, typer.Option("--select", help="Data fields to show.")] = None,
    updated_since: Annotated[
        datetime | None, typer.Option("--updated-since", help="Changed at or after (UTC).")
    ] = None,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted records.")] = False,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List records of an entity; --filter, --orderby, --select need --tenant."""
    if filter_ is None and orderby is None and select is None and updated_since is None:
        sync_record_list(entity, tenant, deleted, limit, after, all_, output)
        return
    if tenant is None:
        raise BadInput("--filter, --orderby, --select and --updated-since need --tenant")
    from mno.connec import access, queries
    from mno.store.db import session_scope

    def page(cursor: str | None, size: int) -> queries.Page:
        with session_scope(write=False) as s:
            writer = access.operator_writer(s, tenant)
            return queries.list_records(
                s,
                writer,
                entity,
                filter=filter_,
                orderby=orderby,
                select=select,
                updated_since=updated_since,
                limit=size,
                cursor=cursor,
                deleted=deleted,
            )

    if all_:

        def every() -> Any:
            cursor = after
            while True:
                found = page(cursor, 1000)
                yield from (_row(r) for r in found.records)
                if found.next is None:
                    return
                cursor = found.next

        render_stream(every(), output, empty="No records.")
        return
    found = page(after, limit)
    render_page([_row(r) for r in found.records], found.next, output, empty="No records.")


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec[k] for k in ("id", "version", "updated_at", "data")}


@app.command("get")
def record_get(
    entity: str,
    record_id: Annotated[
        str, typer.Argument(help="Canonical id (or the app's id with --by-app-id).")
    ],
    tenant: TenantOpt,
    app_code: AppOpt = None,
    by_app_id: Annotated[
        bool, typer.Option("--by-app-id", help="RECORD_ID is the --app's own id.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Show one record of a tenant."""
    from mno.connec import access, queries
    from mno.store.db import session_scope

    if by_app_id and app_code is None:
        raise BadInput("--by-app-id needs --app")
    with session_scope(write=False) as s:
        writer = access.operator_writer(s, tenant, app_code)
        if by_app_id:
            rec = queries.get_by_app_id(s, writer, entity, record_id)
        else:
            rec = queries.get(s, writer, entity, record_id)
    render(rec, output)


def _write_one(tenant: str, app_code: str | None, op: Any) -> dict[str, Any]:
    from mno.connec import access, writes
    from mno.connec.entities import Invalid
    from mno.store.db import session_scope

    with session_scope() as s:
        writer = access.operator_writer(s, tenant, app_code)
        outcome = writes.apply(s, writer, [op])
        result = outcome.results[0]
        if result.errors:
            raise Invalid(op.entity, result.errors)
        if result.status in (404,):
            raise NotFound(result.error or "not found")
        if not result.ok:
            raise Conflict(result.error or "refused")
    rec = dict(result.record or {})
    rec["transaction_id"] = str(outcome.transaction_id)
    return rec


@app.command("put")
def record_put(
    entity: str,
    tenant: TenantOpt,
    data: Annotated[str, typer.Option("--data", help="JSON object, @file or - for stdin.")],
    record_id: Annotated[
        str | None, typer.Option("--id", help="Update this record (else create one).")
    ] = None,
    app_id: Annotated[
        str | None, typer.Option("--app-id", help="The --app's own id of a new record.")
    ] = None,
    patch: Annotated[bool, typer.Option("--patch", help="Change only the given fields.")] = False,
    if_match: IfMatchOpt = None,
    app_code: AppOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create a record, or replace (--patch: change) the one given by --id."""
    from mno.connec.writes import Op

    body = _data(data)
    if record_id is None:
        if patch or if_match is not None:
            raise BadInput("--patch and --if-match need --id")
        if app_id is not None and app_code is None:
            raise BadInput("--app-id needs --app")
        op = Op("create", entity, body, app_id=app_id)
    else:
        op = Op("patch" if patch else "update", entity, body, id=record_id, version=if_match)
    render(_write_one(tenant, app_code, op), output)


@app.command("delete")
def record_delete(
    entity: str,
    record_id: str,
    tenant: TenantOpt,
    if_match: IfMatchOpt = None,
    app_code: AppOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete a record (its tombstone and history are kept)."""
    from mno.connec.writes import Op

    confirm(f"delete {entity} record {record_id} of tenant {tenant}", yes)
    rec = _write_one(tenant, app_code, Op("delete", entity, None, id=record_id, version=if_match))
    render(rec, output)
