"""mno webhook: endpoints, deliveries, replay, test, a local receiver and a verifier.

The store, the webhooks package, the dispatcher and the signing code are imported inside
the commands that use them, so that ``--help`` loads neither SQLAlchemy nor hashlib.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from mno.cli.output import (
    Format,
    OutputOpt,
    done,
    render,
    render_page,
    render_stream,
    success,
)
from mno.cli.params import (
    AfterOpt,
    AllOpt,
    DryRunOpt,
    IntervalOpt,
    LimitOpt,
    WatchOpt,
    YesOpt,
    confirm,
    pairs,
    render_or_watch,
    write_session,
)
from mno.cli.params import since as parse_since
from mno.errors import BadInput
from mno.settings import parse_duration

app = typer.Typer(
    help="Webhook endpoints, deliveries, replay and local tools.", no_args_is_help=True
)
endpoint_app = typer.Typer(help="Manage webhook endpoints.", no_args_is_help=True)
deliveries_app = typer.Typer(help="Inspect deliveries and their attempts.", no_args_is_help=True)
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(deliveries_app, name="deliveries")

LIST_COLUMNS = ["id", "url", "status", "events", "ordered", "rate_limit", "last_failure"]
DELIVERY_COLUMNS = [
    "id",
    "event_type",
    "status",
    "attempts",
    "last_code",
    "next_attempt_at",
    "target",
]


@endpoint_app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Receiver URL (http or https).")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's events.")] = None,
    events: Annotated[
        str | None, typer.Option(help="Filters, e.g. 'tenant.*,invoice.issued'.")
    ] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    rate_limit: Annotated[
        str | None, typer.Option("--rate-limit", help="N/s, all processes.")
    ] = None,
    ordered: Annotated[bool, typer.Option("--ordered", help="FIFO delivery.")] = False,
    timeout: Annotated[str, typer.Option(help="Request timeout.")] = "15s",
    header: Annotated[
        list[str] | None,
        typer.Option("--header", help="K=V (V may be secret:NAME); repeatable; stored sealed."),
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create disabled.")] = False,
    from_event: Annotated[
        int | None,
        typer.Option("--from-event", help="Also deliver the backlog from this event seq on."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Also deliver the backlog since then (24h, 7d, ISO 8601).")
    ] = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Do not try to reach the URL now.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Register an endpoint; it gets its own whsec_ signing secret.

    It receives the events created after it; --from-event or --since queue the earlier
    ones too. Header values are stored sealed; `secret:NAME` values are read from the
    secret store when sending. A URL that the SSRF guard refuses or that does not answer
    is registered with a warning."""
    from mno.cli.output import warn
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    since_at = parse_since(since)
    with session_scope() as s:
        e, backlog = endpoints.add_with_backlog(
            s,
            url,
            tenant=tenant,
            events=events,
            description=description,
            rate_limit=rate_limit,
            ordered=ordered,
            timeout=timeout,
            headers=pairs(header, "header"),
            disabled=disabled,
            from_event=from_event,
            since=since_at,
        )
        data = endpoints.view(e) | {"backlog": backlog}
    problem = None if no_check else endpoints.probe(data["url"])
    if problem:
        warn(f"{problem}; deliveries will fail until that is fixed")
    data["reachable"] = None if no_check else problem is None
    earlier = f", {backlog} earlier events to deliver" if backlog else ""
    done(
        data,
        f"endpoint {data['id']} added{earlier} (see the secret with `show --reveal-secret`)",
        output,
    )


@endpoint_app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's endpoints.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List endpoints, oldest first."""
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    with session_scope(write=False) as s:
        if all_:
            found = endpoints.stream_views(s, tenant=tenant, after=after)
            render_stream(found, output, columns=LIST_COLUMNS, empty="No endpoints.")
            return
        page = endpoints.page_views(s, tenant=tenant, after=after, limit=limit)
    render_page(page.rows, page.next, output, columns=LIST_COLUMNS, empty="No endpoints.")


@endpoint_app.command("show")
def show(
    endpoint_id: Annotated[str, typer.Argument(help="Endpoint id (or a unique prefix).")],
    reveal_secret: Annotated[
        bool, typer.Option("--reveal-secret", help="Print the signing secret.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Show an endpoint."""
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    with session_scope(write=False) as s:
        e = endpoints.get(s, endpoint_id)
        failure = endpoints.last_failures(s, [e.id]).get(e.id)
        data = endpoints.view(e, reveal=reveal_secret, last_failure=failure)
    render(data, output)


@endpoint_app.command("update")
def update(
    endpoint_id: Annotated[str, typer.Argument(help="Endpoint id.")],
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    events: Annotated[str | None, typer.Option(help="New filters ('' = all events).")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    rate_limit: Annotated[str | None, typer.Option("--rate-limit", help="N/s, or 'none'.")] = None,
    ordered: Annotated[bool | None, typer.Option("--ordered/--unordered", help="FIFO.")] = None,
    timeout: Annotated[str | None, typer.Option(help="Request timeout.")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help="K=V; replaces all.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change an endpoint's settings."""
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    with session_scope() as s:
        e = endpoints.update(
            s,
            endpoint_id,
            url=url,
            events=events,
            description=description,
            rate_limit=rate_limit,
            ordered=ordered,
            timeout=timeout,
            headers=pairs(header, "header") if header is not None else None,
        )
        data = endpoints.view(e)
    done(data, f"endpoint {data['id']} updated", output)


def _set_enabled(endpoint_id: str, enabled: bool, output: Format) -> None:
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    with session_scope() as s:
        data = endpoints.view(endpoints.set_enabled(s, endpoint_id, enabled))
    done(data, f"endpoint {data['id']} {'enabled' if enabled else 'disabled'}", output)


@endpoint_app.command("enable")
def enable(endpoint_id: Annotated[str, typer.Argument()], output: OutputOpt = Format.table) -> None:
    """Enable an endpoint (its pending deliveries resume)."""
    _set_enabled(endpoint_id, True, output)


@endpoint_app.command("disable")
def disable(
    endpoint_id: Annotated[str, typer.Argument()], output: OutputOpt = Format.table
) -> None:
    """Disable an endpoint (deliveries wait)."""
    _set_enabled(endpoint_id, False, output)


@endpoint_app.command("delete")
def delete(
    endpoint_id: Annotated[str, typer.Argument()],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete an endpoint; its pending deliveries are cancelled."""
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    confirm(f"delete endpoint {endpoint_id} and cancel its pending deliveries", yes)
    with session_scope() as s:
        endpoints.delete(s, endpoint_id)
    done({"id": endpoint_id, "deleted": True}, f"endpoint {endpoint_id} deleted", output)


@endpoint_app.command("rotate-secret")
def rotate_secret(
    endpoint_id: Annotated[str, typer.Argument()],
    grace: Annotated[str, typer.Option(help="How long the old secret keeps signing too.")] = "24h",
    output: OutputOpt = Format.table,
) -> None:
    """New signing secret; during the grace both signatures are sent."""
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    with session_scope() as s:
        data = endpoints.view(endpoints.rotate_secret(s, endpoint_id, grace))
    done(data, f"secret rotated; old one valid until {data['rotation_grace_until']}", output)


@deliveries_app.command("list")
def deliveries_list(
    endpoint: Annotated[str | None, typer.Option(help="Endpoint id.")] = None,
    status: Annotated[
        str | None, typer.Option(help="pending|succeeded|failed|exhausted|cancelled")
    ] = None,
    event_type: Annotated[
        str | None, typer.Option("--event-type", help="Type, * wildcards.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="24h, 7d or ISO 8601.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
    watch: WatchOpt = False,
    every: IntervalOpt = "2s",
) -> None:
    """List deliveries, newest first (--watch: again every --interval until Ctrl-C)."""
    from mno.store.db import session_scope
    from mno.webhooks import delivery_queue

    columns, empty = DELIVERY_COLUMNS, "No deliveries."

    def list_once() -> None:
        filters: dict[str, Any] = {
            "endpoint": endpoint,
            "status": status,
            "event_type": event_type,
            "since": parse_since(since),
            "after": after,
        }
        with session_scope(write=False) as s:
            if all_:
                found = delivery_queue.stream_deliveries(s, **filters)
                render_stream(found, output, columns=columns, empty=empty)
                return
            page = delivery_queue.page_deliveries(s, **filters, limit=limit)
        render_page(page.rows, page.next, output, columns=columns, empty=empty)

    render_or_watch(list_once, watch, every, output)


@deliveries_app.command("show")
def deliveries_show(
    delivery_id: Annotated[str, typer.Argument()], output: OutputOpt = Format.table
) -> None:
    """Show a delivery and every attempt."""
    from mno.store.db import session_scope
    from mno.webhooks import delivery_queue

    with session_scope(write=False) as s:
        data = delivery_queue.show(s, delivery_id)
    if output is Format.table:
        attempts = data.pop("attempt_log")
        render(data, output)
        render(
            attempts,
            output,
            columns=["at", "status_code", "latency_ms", "error_class", "response"],
            empty="No attempts yet.",
        )
        return
    render(data, output)


@app.command("replay")
def replay(
    endpoint: Annotated[str, typer.Option(help="Endpoint id.")],
    since: Annotated[str | None, typer.Option(help="24h, 7d or ISO 8601.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 or a duration back.")] = None,
    status: Annotated[
        str, typer.Option(help="exhausted|failed|all (all: every one not yet delivered)")
    ] = "exhausted",
    include_delivered: Annotated[
        bool,
        typer.Option("--include-delivered", help="With --status all: resend delivered ones too."),
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Re-queue up to 10,000 deliveries of an endpoint; prints the count (with --dry-run,
    the count it would re-queue)."""
    from mno.webhooks import delivery_queue

    since_at, until_at = parse_since(since), parse_since(until)
    if not dry_run:
        confirm(f"replay the {status} deliveries of endpoint {endpoint}", yes)
    with write_session(dry_run) as s:
        n = delivery_queue.replay(
            s,
            endpoint,
            since=since_at,
            until=until_at,
            status=status,
            include_delivered=include_delivered,
        )
    if output is Format.table:
        typer.echo(n)
        if dry_run:
            success(f"dry run: {n} deliveries would be re-queued; nothing was written")
    else:
        render({"requeued": n} | ({"dry_run": True} if dry_run else {}), output)


@app.command("test")
def test(endpoint_id: Annotated[str, typer.Argument()], output: OutputOpt = Format.table) -> None:
    """Send a webhook.ping to one endpoint now and show the attempt."""
    from mno.agents.dispatcher import send_test

    data = send_test(endpoint_id)
    if output is Format.table:
        attempts = data.pop("attempt_log")
        data.pop("body", None)
        render(data, output)
        render(
            attempts, output, columns=["at", "status_code", "latency_ms", "error_class", "response"]
        )
        return
    render(data, output)


@app.command("listen")
def listen(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8787,
    secret: Annotated[
        str, typer.Option(help="The endpoint's whsec_ secret.", envvar="MNO_WEBHOOK_SECRET")
    ] = "",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    forward: Annotated[
        str | None, typer.Option(help="Forward verified events to this URL.")
    ] = None,
) -> None:
    """A local receiver: verify, enforce ±5 min, dedup on webhook-id, print or forward."""
    from mno.webhooks import listen as listener

    if not secret:
        raise BadInput("--secret is required", "the endpoint's whsec_ secret")
    server = listener.make_server(host, port, secret, forward=forward)
    success(f"listening on http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("verify")
def verify(
    secret: Annotated[str, typer.Option(help="whsec_ secret.")],
    id: Annotated[str, typer.Option("--id", help="webhook-id header.")],
    timestamp: Annotated[str, typer.Option(help="webhook-timestamp header.")],
    signature: Annotated[str, typer.Option(help="webhook-signature header.")],
    tolerance: Annotated[str, typer.Option(help="Timestamp tolerance.")] = "5m",
    output: OutputOpt = Format.table,
) -> None:
    """Check one signature of the body on stdin; exit 0 when valid, 1 when not."""
    from mno import signing

    body = sys.stdin.buffer.read()
    try:
        signing.verify(
            secret,
            id,
            timestamp,
            signature,
            body,
            tolerance_s=int(parse_duration(tolerance).total_seconds()),
        )
    except signing.VerificationError as exc:
        if output is not Format.table:
            render({"valid": False, "reason": str(exc)}, output)
        else:
            typer.echo(f"invalid: {exc}", err=True)
        raise typer.Exit(1) from None
    if output is not Format.table:
        render({"valid": True}, output)
    else:
        typer.echo("valid")
