"""mno connector | connection | sync | record: Connec sync commands.

``mno sync run CONNECTION`` runs a sync; ``mno sync run show RUN_ID`` shows a run
(connection names always contain a '/', so ``show`` cannot be one).

The store and the sync package are imported inside each command, so that ``--help``
loads no SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.follow import AsyncOpt, TimeoutOpt, WaitOpt
from mno.cli.output import (
    Format,
    OutputOpt,
    counter,
    done,
    err_console,
    error,
    render,
    render_page,
    render_stream,
    success,
    warn,
)
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm, csv_list, pairs
from mno.errors import BadInput

connector_app = typer.Typer(help="Manage declarative REST connectors.", no_args_is_help=True)
connection_app = typer.Typer(
    help="Manage tenants' connections to connectors.", no_args_is_help=True
)
app = typer.Typer(
    help="Run Connec sync, list runs, roll a run back, show cursors, resolve conflicts.",
    no_args_is_help=True,
)
record_app = typer.Typer(help="Read canonical records and their history.", no_args_is_help=True)
state_app = typer.Typer(help="Show or reset a connection's stream cursors.", no_args_is_help=True)
conflicts_app = typer.Typer(help="List and resolve sync conflicts.", no_args_is_help=True)
app.add_typer(state_app, name="state")
app.add_typer(conflicts_app, name="conflicts")


# -- connector ----------------------------------------------------------------------------


@connector_app.command("apply")
def connector_apply(
    file: Annotated[list[str], typer.Option("-f", "--file", help="Connector YAML; repeatable.")],
    output: OutputOpt = Format.table,
) -> None:
    """Create or update connectors from YAML files."""
    from mno.store.db import session_scope
    from mno.sync import spec

    specs = [(spec.load_file(f), f) for f in file]  # validate all before writing any
    results = []
    with session_scope() as s:
        for doc, path in specs:
            row, what = spec.apply(s, doc, source=path)
            results.append({"name": row.name, "app": doc.app, "result": what})
    if output is Format.table:
        for r in results:
            success(f"connector {r['name']} {r['result']}")
    else:
        render(results, output)


@connector_app.command("list")
def connector_list(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List connectors, by name."""
    from mno.store.db import session_scope
    from mno.sync import views

    with session_scope(write=False) as s:
        if all_:
            render_stream(views.stream_connectors(s, after=after), output, empty="No connectors.")
            return
        page = views.page_connectors(s, after=after, limit=limit)
    render_page(page.rows, page.next, output, empty="No connectors.")


@connector_app.command("show")
def connector_show(name: str, output: OutputOpt = Format.table) -> None:
    """Show a connector's document."""
    from mno.store.db import session_scope
    from mno.sync import views

    with session_scope(write=False) as s:
        data = views.connector(s, name)
    if output is Format.table:
        render(data, Format.yaml)
    else:
        render(data, output)


@connector_app.command("test")
def connector_test(
    name: str,
    entity: Annotated[str | None, typer.Option(help="Entity (default: the first).")] = None,
    connection: Annotated[
        str | None, typer.Option(help="Use this connection's credentials and base URL.")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Fetch one page and show the mapped records."""
    from mno.sync import views

    rows = views.first_page(name, entity=entity, connection=connection)
    render(rows, output, empty="The first page is empty.")


@connector_app.command("validate")
def connector_validate(
    name_or_file: Annotated[str, typer.Argument(help="A connector's name or YAML file.")],
    sample: Annotated[
        str | None,
        typer.Option("--sample", help="A sample external record (JSON or YAML file)."),
    ] = None,
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Check that each entity's pull and push mappings round-trip: push(pull(x)) == x.

    Exit 1 when a field does not, 2 for an invalid connector or sample file."""
    from mno.sync import roundtrip

    doc = roundtrip.connector(name_or_file)
    record = roundtrip.load_sample(sample) if sample else None
    rows = roundtrip.check(doc, record, entity)
    failed = [r for r in rows if r["round_trips"] is False]
    if output is Format.table:
        if failed:
            render(failed, output, columns=["entity", "field", "status", "sample", "back"])
        checked = sum(1 for r in rows if r["round_trips"] is not None)
        if failed:
            error(f"{len(failed)} of {checked} pushed field(s) of {doc.name} do not round-trip")
        else:
            success(f"{checked} pushed field(s) of {doc.name} round-trip")
    else:
        render(rows, output)
    if failed:
        raise typer.Exit(1)


@connector_app.command("discover")
def connector_discover(
    url: Annotated[str, typer.Option("--url", help="The API's base URL (or the list's URL).")],
    path: Annotated[
        str | None, typer.Option("--path", help="The list's path, with any query.")
    ] = None,
    auth: Annotated[
        list[str] | None,
        typer.Option("--auth", help="Auth field K=V (type=bearer, token=secret:NAME); repeatable."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The connector's name.")] = None,
    app: Annotated[str, typer.Option(help="The app's code.")] = "CHANGE_ME",
    output: OutputOpt = Format.yaml,
) -> None:
    """Sample an endpoint's first page and print a proposed connector document."""
    from mno.sync import discover

    proposal = discover.discover(url, path, pairs(auth, "auth field"), name=name, app=app)
    if output is Format.json:
        render({"document": proposal.document, "notes": proposal.notes}, output)
        return
    render(proposal.document, Format.yaml)
    for note in proposal.notes:
        err_console().print(f"# check: {note}", markup=False, highlight=False)


@connector_app.command("auth")
def connector_auth(
    connection: str,
    code: Annotated[
        str | None, typer.Option("--code", help="The authorization code to exchange once.")
    ] = None,
    redirect_uri: Annotated[
        str | None, typer.Option(help="The redirect URI the code was issued for.")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Authorise a connection (OAuth2): print the consent URL, or exchange --code."""
    from mno.store.db import session_scope
    from mno.sync import oauth

    with session_scope() as s:
        if code is None:
            result = {"connection": connection, "authorize_url": oauth.consent_url(s, connection)}
        else:
            result = oauth.exchange_code(s, connection, code, redirect_uri=redirect_uri)
    if output is Format.table and code is not None:
        success(f"connection {connection} authorised; tokens stored as secrets")
    render(result, output)


# -- connection ---------------------------------------------------------------------------


@connection_app.command("add")
def connection_add(
    tenant: str,
    connector: str,
    entities: Annotated[
        str | None, typer.Option("--entities", help="Comma-separated entities (default: all).")
    ] = None,
    no_push: Annotated[bool, typer.Option("--no-push", help="Never write to this app.")] = False,
    no_pull: Annotated[bool, typer.Option("--no-pull", help="Never read from this app.")] = False,
    preemption: Annotated[
        str | None, typer.Option(help="Conflict winner: platform or app (default: newest).")
    ] = None,
    credential: Annotated[
        list[str] | None,
        typer.Option("--credential", help="Auth field override K=secret:NAME; repeatable."),
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="This tenant's API base URL.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Connect a tenant to a connector."""
    from mno.store.db import session_scope
    from mno.sync import connections

    with session_scope() as s:
        row = connections.add(
            s,
            tenant,
            connector,
            entities=csv_list(entities) if entities else None,
            push=not no_push,
            pull=not no_pull,
            preemption=preemption,
            credentials=pairs(credential, "credential"),
            base_url=base_url,
        )
        view = connections.view(s, row)
    if output is Format.table:
        success(f"connection {view['name']} added")
    render(view, output)


@connection_app.command("list")
def connection_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List connections, by name."""
    from mno.store.db import session_scope
    from mno.sync import connections

    cols = ["name", "entities", "pull", "push", "paused", "consecutive_failures", "last_run_at"]
    empty = "No connections."
    with session_scope(write=False) as s:
        if all_:
            found = connections.stream_connections(s, tenant, after=after)
            render_stream(found, output, columns=cols, empty=empty)
            return
        page = connections.page_connections(s, tenant, after=after, limit=limit)
    render_page(page.rows, page.next, output, columns=cols, empty=empty)


@connection_app.command("show")
def connection_show(name: str, output: OutputOpt = Format.table) -> None:
    """Show a connection."""
    from mno.store.db import session_scope
    from mno.sync import connections

    with session_scope(write=False) as s:
        render(connections.view(s, connections.get(s, name)), output)


def _pause(name: str, paused: bool, output: Format) -> None:
    from mno.store.db import session_scope
    from mno.sync import connections

    with session_scope() as s:
        view = connections.view(s, connections.set_paused(s, name, paused))
    if output is Format.table:
        success(f"connection {view['name']} {'paused' if paused else 'resumed'}")
    else:
        render(view, output)


@connection_app.command("pause")
def connection_pause(name: str, output: OutputOpt = Format.table) -> None:
    """Pause a connection: no runs until resumed."""
    _pause(name, True, output)


@connection_app.command("resume")
def connection_resume(name: str, output: OutputOpt = Format.table) -> None:
    """Resume a paused connection (clears recovery mode)."""
    _pause(name, False, output)


@connection_app.command("update")
def connection_update(
    name: str,
    entities: Annotated[
        str | None, typer.Option("--entities", help="Comma-separated entities (replaces them).")
    ] = None,
    push: Annotated[
        bool | None, typer.Option("--push/--no-push", help="Write to this app or not.")
    ] = None,
    pull: Annotated[
        bool | None, typer.Option("--pull/--no-pull", help="Read from this app or not.")
    ] = None,
    preemption: Annotated[
        str | None, typer.Option(help="Conflict winner: platform, app or none (newest).")
    ] = None,
    credential: Annotated[
        list[str] | None,
        typer.Option("--credential", help="K=secret:NAME; repeatable; replaces the set."),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help='This tenant\'s API base URL ("" clears it).')
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change a connection's entities, directions, preemption, credentials or base URL."""
    from mno.store.db import session_scope
    from mno.sync import connections

    fields: dict[str, Any] = {}  # only the options given: the others keep their value
    if entities is not None:
        fields["entities"] = csv_list(entities)
    if preemption is not None:
        fields["preemption"] = None if preemption == "none" else preemption
    if credential:
        fields["credentials"] = pairs(credential, "credential")
    if base_url is not None:
        fields["base_url"] = base_url or None
    with session_scope() as s:
        row = connections.update(s, name, push=push, pull=pull, **fields)
        view = connections.view(s, row)
    if output is Format.table:
        success(f"connection {view['name']} updated")
    else:
        render(view, output)


@connection_app.command("remove")
def connection_remove(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Remove a connection with its id maps and cursors (canonical records stay)."""
    from mno.store.db import session_scope
    from mno.sync import connections

    confirm(f"remove connection {name} with its id maps and cursors", yes)
    with session_scope() as s:
        connections.remove(s, name)
    done({"connection": name, "removed": True}, f"connection {name} removed", output)


# -- sync ---------------------------------------------------------------------------------


@app.command("run")
def sync_run(
    connection: Annotated[str, typer.Argument(help="Connection name, or `show` then a run id.")],
    run_id: Annotated[str | None, typer.Argument(help="With `show`: the run id.")] = None,
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    full: Annotated[bool, typer.Option("--full", help="No date filter; detect deletes.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Run even in recovery mode.")] = False,
    backfill: Annotated[
        bool,
        typer.Option("--backfill", help="First queue the tenant's records this connection lacks."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --backfill: count what would be pushed.")
    ] = False,
    async_: AsyncOpt = False,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = "1h",
    output: OutputOpt = Format.table,
) -> None:
    """Run a sync of CONNECTION in the foreground; `mno sync run show ID` shows a run.

    With --backfill, the tenant's existing records of the connection's entities that it
    has not pulled or been pushed are queued to it first, and the run pushes them. With
    --async a poller does the run (woken at once) and the request id is printed; --wait
    follows it."""
    from mno.store.db import session_scope
    from mno.sync import views

    if connection == "show":
        if not run_id:
            raise BadInput("missing run id", "mno sync run show RUN_ID")
        with session_scope(write=False) as s:
            render(views.run(s, run_id), output)
        return
    if dry_run and not backfill:
        raise BadInput("--dry-run goes with --backfill", "a run itself has no dry run")
    if wait and not async_:
        raise BadInput("--wait goes with --async", "a run without --async waits anyway")
    if async_ and backfill:
        raise BadInput("--backfill cannot be queued", "run it without --async")
    if async_:
        _queue_run(connection, entity, full, force, wait, timeout, output)
        return
    from mno.sync import engine

    queued: dict[str, Any] | None = None
    if backfill:
        from mno.sync import backfill as backfills

        queued = backfills.queue(connection, dry_run=dry_run)
        if dry_run:
            done(queued, f"would push {queued['records']} record(s) to {connection}", output)
            return

    with counter(f"syncing {connection}") as on_progress:
        run = engine.run(
            connection,
            entity=entity,
            full=full,
            force=force,
            on_progress=on_progress,
            raise_fatal=True,  # unreachable: exit 3; credentials refused: exit 1 + hint
        )
    with session_scope(write=False) as s:
        view = views.run_view(s, run)
    if queued is not None:
        view["backfill"] = queued
    if output is Format.table:
        if queued is not None:
            success(f"backfill queued {queued['records']} record(s)")
        success(f"run {view['id']} {view['status']}")
    render(view, output)
    if run.status == "error":
        raise typer.Exit(1)


def _queue_run(
    connection: str,
    entity: str | None,
    full: bool,
    force: bool,
    wait: bool,
    timeout: str,
    output: Format,
) -> None:
    """Queue the run for the pollers (``mno.store.requests``); with ``wait`` follow it."""
    from mno.cli.follow import run_async
    from mno.store.db import session_scope
    from mno.sync import connections

    with session_scope(write=False) as s:
        name = connections.get(s, connection).name  # an unknown one: nothing is queued
    args = {"connection": name, "entity": entity, "full": full, "force": force}
    run_async("sync_run", args, "poller", wait, timeout, output)


@app.command("unlock")
def sync_unlock(
    connection: Annotated[str, typer.Argument(help="Connection name.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Release CONNECTION's run lock whoever holds it (a run that died on another host).

    A run still holding it stops at its next page if another run has taken the lock."""
    from mno.store.db import session_scope
    from mno.sync import runlock

    confirm(f"release the run lock of {connection} whoever holds it", yes)
    with session_scope() as s:
        result = runlock.unlock(s, connection)
    message = (
        f"run lock of {connection} released (held by {result['holder']})"
        if result["released"]
        else f"{connection} was not locked"
    )
    done(result, message, output)


@app.command("runs")
def sync_runs(
    connection: Annotated[str | None, typer.Option(help="Only this connection.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List sync runs, newest first."""
    from mno.store.db import session_scope
    from mno.sync import views

    columns, empty = views.RUN_COLUMNS, "No runs."
    with session_scope(write=False) as s:
        if all_:
            found = views.stream_runs(s, connection, after=after)
            render_stream(found, output, columns=columns, empty=empty)
            return
        page = views.page_runs(s, connection, after=after, limit=limit)
    render_page(page.rows, page.next, output, columns=columns, empty=empty)


@app.command("rollback")
def sync_rollback(
    run_id: str,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan only.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Restore even records later runs changed.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Restore the records a run changed to their before-state and push them out.

    The plan (shown by --dry-run, and when the rollback is refused) lists the records to
    restore, the records later runs changed, field by field, and what --force overwrites."""
    from mno.store.db import session_scope
    from mno.sync import rollback, views

    with session_scope(write=False) as s:
        rid = views.run_id(s, run_id)
    try:
        result = rollback.rollback_and_push(rid, dry_run=dry_run, force=force)
    except rollback.Refused as exc:
        _render_plan(exc.plan, output)
        raise
    _render_plan(result, output)
    if output is not Format.table:
        return
    n, m = len(result.items), len(result.conflicts)
    over = f", overwriting {m} later change(s)" if m else ""
    if not dry_run:
        success(f"restored {n} record(s){over}")
    elif result.refused:
        warn(f"would refuse: later runs changed {m} record(s); --force overwrites them")
    else:
        success(f"would restore {n} record(s){over}")


def _render_plan(plan: Any, output: Format) -> None:
    """A rollback plan: the records to restore, then the later changes it meets."""
    if output is not Format.table:
        render(plan.as_dict(), output)
        return
    rows = [
        {"record_id": i["record_id"], "entity": i["entity"], "action": i["restore"]}
        for i in plan.items
    ]
    render(rows, output, empty="The run changed no records.")
    if not plan.conflicts:
        return
    changed = []
    for c in plan.conflicts:
        writes = {o["field"]: o["restore"] for o in c["overwrites"]}
        for ch in c["changes"] or [{"field": "-", "after_run": None, "current": None}]:
            changed.append(
                {
                    "record_id": c["record_id"],
                    "later_run": c["later_run"],
                    "field": ch["field"],
                    "after_run": ch["after_run"],
                    "now": ch["current"],
                    "force_writes": writes.get(ch["field"], ch["current"]),
                }
            )
    render(changed, output, title="Changed since the run (--force overwrites)")


# -- state --------------------------------------------------------------------------------

StreamOpt = Annotated[str | None, typer.Option("--stream", help="Only this stream (entity).")]


@state_app.command("show")
def state_show(
    connection: Annotated[str, typer.Argument(help="Connection name.")],
    stream: StreamOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Show each stream's cursor, last pass start, lookback and records seen."""
    from mno.store.db import session_scope
    from mno.sync import state

    with session_scope(write=False) as s:
        rows = state.show(s, connection, stream)
    render(rows, output, columns=state.COLUMNS, empty="No streams.")


@state_app.command("reset")
def state_reset(
    connection: Annotated[str, typer.Argument(help="Connection name.")],
    stream: StreamOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Reset stream cursors: the next run pulls every record again (none twice)."""
    from mno.store.db import session_scope
    from mno.sync import state

    what = f"stream {stream} of {connection}" if stream else f"every stream of {connection}"
    confirm(f"reset the cursor of {what}", yes)
    with session_scope() as s:
        result = state.reset(s, connection, stream)
    done(result, f"{what} reset: the next run pulls everything", output)


# -- conflicts ----------------------------------------------------------------------------


@conflicts_app.command("list")
def conflicts_list(
    connection: Annotated[str, typer.Argument(help="Connection name.")],
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved ones.")] = False,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List a connection's conflicts, newest first, with both sides."""
    from mno.store.db import session_scope
    from mno.sync import conflicts

    def shown(row: dict[str, Any]) -> dict[str, Any]:
        return _conflict_row(row) if output is Format.table else row

    columns, empty = conflicts.COLUMNS, "No conflicts."
    with session_scope(write=False) as s:
        if all_:
            found = conflicts.stream_conflicts(s, connection, open_only=open_only, after=after)
            render_stream((shown(r) for r in found), output, columns=columns, empty=empty)
            return
        page = conflicts.page_conflicts(
            s, connection, open_only=open_only, after=after, limit=limit
        )
    render_page([shown(r) for r in page.rows], page.next, output, columns=columns, empty=empty)


def _conflict_row(row: dict[str, Any]) -> dict[str, Any]:
    """A conflict as a table shows it: each side's values of the fields that differ."""

    def side(data: dict[str, Any] | None) -> str:
        if data is None:
            return "(deleted)"
        return ", ".join(f"{k}={data.get(k)}" for k in row["fields"])

    return {
        **row,
        "fields": ", ".join(row["fields"]),
        "platform": side(row["platform"]),
        "app": side(row["app"]),
    }


@conflicts_app.command("resolve")
def conflicts_resolve(
    conflict_id: Annotated[str, typer.Argument(help="Conflict id.")],
    keep: Annotated[
        str, typer.Option("--keep", help="local: the platform's version; remote: the app's.")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Even when the record changed since the conflict.")
    ] = False,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Resolve a conflict: keep the platform's version (pushed to the app) or the app's."""
    from mno.store.db import session_scope
    from mno.sync import conflicts, views

    if keep not in conflicts.KEEP:
        raise BadInput(f"invalid --keep {keep!r}", "local or remote")
    with session_scope(write=False) as s:
        cid = views.conflict_id(s, conflict_id)
    side = "the platform's version" if keep == "local" else "the app's version"
    confirm(f"resolve conflict {cid} keeping {side}", yes)
    result = conflicts.resolve_and_push(cid, keep, force=force)
    done(result, f"conflict {cid} resolved: kept {side}", output)


# -- record -------------------------------------------------------------------------------


@record_app.command("list")
def record_list(
    entity: str,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted records.")] = False,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List canonical records of an entity, oldest first."""
    from mno.store.db import session_scope
    from mno.sync import views

    with session_scope(write=False) as s:
        if all_:
            found = views.stream_records(s, entity, tenant=tenant, deleted=deleted, after=after)
            render_stream(found, output, empty="No records.")
            return
        page = views.page_records(
            s, entity, tenant=tenant, deleted=deleted, after=after, limit=limit
        )
    render_page(page.rows, page.next, output, empty="No records.")


@record_app.command("show")
def record_show(entity: str, record_id: str, output: OutputOpt = Format.table) -> None:
    """Show one canonical record with its id maps."""
    from mno.store.db import session_scope
    from mno.sync import views

    with session_scope(write=False) as s:
        view = views.record(s, entity, record_id)
    render(view, output)


@record_app.command("history")
def record_history(entity: str, record_id: str, output: OutputOpt = Format.table) -> None:
    """The audit trail of a record: every change with its run, source, before and after."""
    from mno.store.db import session_scope
    from mno.sync import views

    with session_scope(write=False) as s:
        rows = views.record_history(s, entity, record_id)
    render(rows, output, empty="No changes.")
