"""mno host and mno instance: Docker hosts and the tenants' hosted app instances (Nex).

The domain modules are imported inside the commands: they load SQLAlchemy, which
``mno --help`` and the group's own help do not need.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.edge import cert_app
from mno.cli.output import (
    Format,
    OutputOpt,
    done,
    render,
    render_list,
    render_page,
    spinner,
    success,
)
from mno.cli.params import (
    AfterOpt,
    AllOpt,
    IntervalOpt,
    LimitOpt,
    WatchOpt,
    YesOpt,
    confirm,
    pairs,
    render_or_watch,
)
from mno.errors import BadInput, MnoError, Unavailable
from mno.settings import parse_duration

host_app = typer.Typer(help="Docker hosts that run Nex instances.", no_args_is_help=True)
app = typer.Typer(
    help="Hosted app instances: create, start, stop, update, back up, terminate.",
    no_args_is_help=True,
)
domain_app = typer.Typer(help="Custom domains routed to an instance.", no_args_is_help=True)
app.add_typer(domain_app, name="domain")
backup_app = typer.Typer(
    help="Encrypted restic snapshots of an instance's data volume (platform YAML backups:).",
    no_args_is_help=True,
)
app.add_typer(backup_app, name="backup")
BACKUP_COLUMNS = ["id", "time", "bytes", "host", "instance"]
domain_app.add_typer(cert_app, name="cert")

LIST_COLUMNS = ["name", "tenant", "app", "status", "desired", "host", "tasks", "endpoint", "url"]
HOST_COLUMNS = [
    "name",
    "source",
    "runtime",
    "reachable",
    "version",
    "instances",
    "max_instances",
    "memory_used",
    "memory_free",
    "labels",
    "namespace",
    "error",
]
NODE_COLUMNS = ["host", "hostname", "id", "role", "availability", "state", "labels", "tasks"]
Name = Annotated[str, typer.Argument(help="Instance name (or id).")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Follow this change until the provisioner finished it (exit 3 at once when no "
        "provisioner runs, unless --inline).",
    ),
]
InlineOpt = Annotated[
    bool,
    typer.Option(
        "--inline",
        help="With --wait: do the provisioner's work on this instance in this process "
        "(when no `mno agents run` is running).",
    ),
]
TimeoutOpt = Annotated[str, typer.Option(help="How long --wait waits, e.g. 5m.")]


@host_app.command("list")
def host_list(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Each host's reachability, Docker version, instances and used/free capacity, and the
    store's namespace (the prefix and mno.namespace label of its Docker objects); the
    nodes of a swarm host (role, availability, labels, tasks) follow."""
    from mno.nex import hosts, swarm_nodes
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = hosts.host_rows(s)
        nodes = swarm_nodes.node_rows(s, rows)
    render_list(
        rows,
        "name",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=HOST_COLUMNS,
        empty="No hosts.",
    )
    if nodes and Format(output) not in (Format.json, Format.yaml):
        render(nodes, output, columns=NODE_COLUMNS, title="Swarm nodes")


def _host_fields(
    base_url: str | None,
    publish_address: str | None,
    memory: str | None,
    max_instances: int | None,
    label: list[str] | None,
    timeout: int | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "base_url": base_url,
        "publish_address": publish_address,
        "memory": memory,
        "max_instances": max_instances,
        "timeout": timeout,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    if label:
        fields["labels"] = pairs(label, "label")
    return fields


BaseUrlOpt = Annotated[
    str | None,
    typer.Option(help="Docker engine: unix://, tcp:// or ssh:// (default: the local socket)."),
]
PublishOpt = Annotated[str | None, typer.Option(help="Where container ports are published.")]
MemoryOpt = Annotated[str | None, typer.Option(help="Memory capacity, e.g. 8g.")]
MaxOpt = Annotated[int | None, typer.Option(help="At most this many instances.")]
LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", help="K=V an app's labels must match; repeatable.")
]
HostTimeoutOpt = Annotated[int | None, typer.Option(help="Seconds per Docker API call.")]


@host_app.command("add")
def host_add(
    name: Annotated[str, typer.Argument(help="Host name (a-z, 0-9, '-').")],
    base_url: BaseUrlOpt = None,
    publish_address: PublishOpt = None,
    memory: MemoryOpt = None,
    max_instances: MaxOpt = None,
    label: LabelOpt = None,
    timeout: HostTimeoutOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Keep a Docker host in the store; every agent sharing the store may place on it.

    Refused when its engine (docker info ID) is already a host. Adding the first host
    while instances run on the implicit local host keeps it as a stored host named local."""
    from mno.nex import hosts
    from mno.store.db import session_scope

    fields = _host_fields(base_url, publish_address, memory, max_instances, label, timeout)
    with session_scope() as s:
        host = hosts.add(s, name, **fields)
    done(host.model_dump(), f"host {name} added", output)


@host_app.command("update")
def host_update(
    name: Annotated[str, typer.Argument(help="A host kept in the store.")],
    base_url: BaseUrlOpt = None,
    publish_address: PublishOpt = None,
    memory: MemoryOpt = None,
    max_instances: MaxOpt = None,
    label: LabelOpt = None,
    timeout: HostTimeoutOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change a stored host's settings (--label replaces the labels; a --base-url that
    reaches another host's engine is refused)."""
    from mno.nex import hosts
    from mno.store.db import session_scope

    fields = _host_fields(base_url, publish_address, memory, max_instances, label, timeout)
    with session_scope() as s:
        host = hosts.update(s, name, **fields)
    done(host.model_dump(), f"host {name} updated", output)


@host_app.command("remove")
def host_remove(
    name: Annotated[str, typer.Argument(help="A host kept in the store.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Forget a stored host; refused while live instances are placed on it."""
    from mno.nex import hosts
    from mno.store.db import session_scope

    confirm(f"remove host {name}", yes)
    with session_scope() as s:
        hosts.remove(s, name)
    done({"name": name, "removed": True}, f"host {name} removed", output)


def _check_provisioner(wait: bool, inline: bool) -> None:
    """``--wait`` needs a live provisioner (or ``--inline``): refuse before writing."""
    if wait and not inline and not _provisioner_live():
        raise Unavailable(
            "no provisioner is running, so --wait would never end",
            "start one with `mno agents run`, or add --inline to do the work here",
        )


def _provisioner_live() -> bool:
    from mno.agents import status
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        return status.live(s, "provisioner")


def _inline(instance_id: Any) -> int:
    """Do the provisioner's work on one instance in this process (under its lease)."""
    from mno.agents import config, provisioner
    from mno.agents.config import AgentConfig
    from mno.agents.runner import context_for

    cfg = config.load(None)
    agent_cfg = cfg.agents.get("provisioner") or AgentConfig(name="provisioner")
    ctx = context_for("provisioner", agent_cfg, max_items=1)
    return provisioner.reconcile_now(ctx, instance_id).claimed


def _wait(
    name: str, until: tuple[str, ...], timeout: str, version: int, inline: bool = False
) -> dict[str, Any]:
    """Follow the request that made spec ``version`` until its outcome: the provisioner
    applied it (or a later one) and the status is in ``until``, or its attempt failed.
    An earlier failure does not count. With ``inline`` the work is done here."""
    from mno.nex import instances
    from mno.store.db import session_scope

    deadline = time.monotonic() + parse_duration(timeout).total_seconds()
    checked = time.monotonic()
    with spinner(f"waiting for {name}"):
        while True:
            with session_scope(write=False) as s:
                inst = instances.get(s, name)
                view = instances.view(s, inst).as_dict()
                outcome = instances.outcome(inst, version)
            if outcome == "done":
                if view["status"] in until:
                    return view
                raise MnoError(
                    f"instance {name} is {view['status']}", "a later change overrode this one"
                )
            if outcome == "failed":
                raise MnoError(
                    f"instance {name} failed: {view['last_error']}",
                    "the provisioner retries it with backoff; see `mno instance show`",
                )
            if view["status"] == "pending_capacity":
                raise MnoError(
                    f"instance {name} waits for room: {view['last_error']}",
                    "it is placed as soon as a host has room; see `mno host capacity`",
                )
            if inline and _inline(inst.id):
                continue
            if time.monotonic() >= deadline:
                raise MnoError(
                    f"instance {name} is still {view['status']} after {timeout}",
                    "see `mno agents status`",
                )
            if not inline and time.monotonic() - checked > 5:
                checked = time.monotonic()
                if not _provisioner_live():
                    raise Unavailable(
                        f"no provisioner is running; the change to {name} is recorded",
                        "start one with `mno agents run`, or wait with --wait --inline",
                    )
            time.sleep(0.05)


def _finish(
    name: str,
    verb: str,
    wait: bool,
    until: tuple[str, ...],
    timeout: str,
    output: Format,
    version: int,
    inline: bool = False,
) -> None:
    from mno.nex import instances
    from mno.store.db import session_scope

    if wait:
        view = _wait(name, until, timeout, version, inline)
        error = view.get("last_error") or ""
        if verb == "update" and " rolled back to deploy " in error:
            # the update failed its gate: the previous container serves again
            raise MnoError(
                f"instance {name} failed: {error.splitlines()[0]}",
                "the previous container serves; see `mno instance show`",
            )
        done(view, f"instance {name} {view['status']}", output)
        return
    with session_scope(write=False) as s:
        view = instances.view(s, instances.get(s, name)).as_dict()
    done(view, f"instance {name}: {verb} requested", output)


@app.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    app_code: Annotated[str, typer.Argument(metavar="APP", help="Nex app code.")],
    name: Annotated[
        str | None, typer.Option(help="Instance name (a DNS label; default <app>-<tenant>).")
    ] = None,
    domain: Annotated[list[str] | None, typer.Option(help="Custom domain, repeatable.")] = None,
    env: Annotated[list[str] | None, typer.Option(help="K=V or K=secret:NAME, repeatable.")] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit (default: the tier's, else the app's).")
    ] = None,
    cpus: Annotated[
        str | None, typer.Option(help="CPU limit (default: the tier's, else the app's).")
    ] = None,
    pids: Annotated[int | None, typer.Option(help="Process limit (default: the tier's).")] = None,
    wait: WaitOpt = False,
    inline: InlineOpt = False,
    timeout: TimeoutOpt = "5m",
    output: OutputOpt = Format.table,
) -> None:
    """Record a new instance; the provisioner creates it (--wait follows it)."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.cli.remote import unsupported
        from mno.remote import instances as remote

        for flag, value in (("--pids", pids), ("--wait", wait), ("--inline", inline)):
            if value:
                unsupported(flag)
        fields = {
            "app": app_code,
            "name": name,
            "domains": domain or [],
            "env": pairs(env, "env"),
            "memory": memory,
            "cpus": cpus,
        }
        data = remote.create(client, tenant, fields)
        if output is Format.table:
            success(f"instance {data['name']} staged; the provisioner will start it")
        render(data, output)
        return
    from mno.nex import instances
    from mno.store.db import session_scope

    _check_provisioner(wait, inline)
    with session_scope() as s:
        inst = instances.create(
            s,
            tenant,
            app_code,
            name=name,
            domains=domain or [],
            env=pairs(env, "env"),
            memory=memory,
            cpus=cpus,
            pids=pids,
        )
        created, version = inst.name, inst.spec_version
    if wait:
        view = _wait(created, ("running",), timeout, version, inline)
        done(view, f"instance {created} running at {view['endpoint']}", output)
        return
    with session_scope(write=False) as s:
        view = instances.view(s, instances.get(s, created)).as_dict()
    if output is Format.table:
        success(f"instance {created} staged; the provisioner will start it")
        render(view, output)
    else:
        render(view, output)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's instances.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    app_code: Annotated[str | None, typer.Option("--app", help="Only this app.")] = None,
    host: Annotated[str | None, typer.Option(help="Only this host.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Every instance, terminated ones included, streamed (ignores --limit)."
        ),
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """List instances (terminated ones with --all or --status terminated)."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.cli.remote import unsupported
        from mno.remote import instances as remote

        if tenant is None:
            raise BadInput("--tenant is required with --server")
        for flag, value in (("--app", app_code), ("--host", host), ("--all", all_)):
            if value:
                unsupported(flag)
        found, cursor = remote.page(client, tenant, limit=limit, after=after, status=status)
        render_page(found, cursor, output, columns=LIST_COLUMNS, empty="No instances.")
        return
    from mno.nex import instances
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        views = instances.list_instances(
            s, tenant=tenant, status=status, app=app_code, host=host, include_terminated=all_
        )
    render_list(
        [v.as_dict() for v in views],
        "name",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=LIST_COLUMNS,
        empty="No instances.",
    )


@app.command("show")
def show(
    name: Name,
    output: OutputOpt = Format.table,
    watch: WatchOpt = False,
    every: IntervalOpt = "2s",
) -> None:
    """Show one instance (--watch: again every --interval until Ctrl-C)."""
    from mno.nex import instances
    from mno.store.db import session_scope

    def show_once() -> None:
        from mno.cli.remote import hub

        if (client := hub()) is not None:
            from mno.remote import instances as remote

            render(remote.get(client, name), output)
            return
        with session_scope(write=False) as s:
            view = instances.view(s, instances.get(s, name)).as_dict()
        render(view, output)

    render_or_watch(show_once, watch, every, output)


@app.command("logs")
def logs(
    name: Name,
    tail: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only output newer than this: a duration (10m, 2h) or an ISO time."),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep streaming until the container stops or Ctrl-C (exit 0)."
        ),
    ] = False,
) -> None:
    """Print the container's output (stdout and stderr, as the engine interleaves them);
    on a swarm host, the service's (every task's)."""
    from mno import clock
    from mno.nex import attach

    after = None
    if since is not None:
        after = _since(since, clock.now())
    out = sys.stdout.buffer
    try:
        for chunk in attach.logs(name, tail=tail, follow=follow, since=after):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        pass


def _since(value: str, now: Any) -> Any:
    from datetime import UTC, datetime

    try:
        return now - parse_duration(value)
    except MnoError:
        pass
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"invalid --since {value!r}", "a duration like 10m or an ISO time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@app.command(
    "exec",
    context_settings={
        "allow_interspersed_args": False,
        "allow_extra_args": True,
        "ignore_unknown_options": True,
    },
)
def exec_(ctx: typer.Context, name: Name) -> None:
    """Run a command in the instance's container: NAME -- CMD [ARG]... (no TTY, no stdin).
    On a swarm host: in a running task's container on the manager's node.

    Everything after NAME is the command's (the -- is optional). Its stdout and stderr
    go to mno's, and its exit code becomes mno's (126/127 when it cannot be run or is not
    found). mno's own errors: 1 when the instance is not found, has no container or is
    not running, 3 when its host cannot be reached. Example:
    mno instance exec web-acme -- sh -c 'ls /data'."""
    from mno.nex import attach

    def write(stream: Any) -> Any:
        def put(data: bytes) -> None:
            stream.write(data)
            stream.flush()

        return put

    args = list(ctx.args)
    if args[:1] == ["--"]:  # options stop at NAME already: a -- after it is only a marker
        args = args[1:]
    try:
        code = attach.run(name, args, write(sys.stdout.buffer), write(sys.stderr.buffer))
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


def _simple(verb: str, fn_name: str, until: tuple[str, ...]) -> Any:
    def command(
        name: Name,
        wait: WaitOpt = False,
        inline: InlineOpt = False,
        timeout: TimeoutOpt = "5m",
        output: OutputOpt = Format.table,
    ) -> None:
        from mno.cli.remote import hub

        if (client := hub()) is not None:
            from mno.cli.remote import unsupported
            from mno.remote import instances as remote

            if wait or inline:
                unsupported("--wait" if wait else "--inline")
            done(remote.act(client, name, verb), f"instance {name}: {verb} requested", output)
            return
        from mno.nex import instances
        from mno.store.db import session_scope

        _check_provisioner(wait, inline)
        with session_scope() as s:
            version = getattr(instances, fn_name)(s, name).spec_version
        _finish(name, verb, wait, until, timeout, output, version, inline)

    command.__doc__ = {
        "start": "Start a stopped instance.",
        "stop": "Stop an instance (its container and data are kept).",
        "restart": "Restart an instance's container.",
    }[verb]
    return command


app.command("start")(_simple("start", "start", ("running",)))
app.command("stop")(_simple("stop", "stop", ("stopped",)))
app.command("restart")(_simple("restart", "restart", ("running",)))


@app.command("update")
def update(
    name: Name,
    image: Annotated[str | None, typer.Option(help="New image (e.g. a new tag).")] = None,
    env: Annotated[list[str] | None, typer.Option(help="Set K=V, repeatable.")] = None,
    unset_env: Annotated[list[str] | None, typer.Option(help="Remove env K, repeatable.")] = None,
    wait: WaitOpt = False,
    inline: InlineOpt = False,
    timeout: TimeoutOpt = "5m",
    output: OutputOpt = Format.table,
) -> None:
    """Roll out a new image or env (rolling without a volume, stop-first with one)."""
    from mno.nex import instances
    from mno.store.db import session_scope

    _check_provisioner(wait, inline)
    with session_scope() as s:
        inst = instances.update(s, name, image=image, env=pairs(env, "env"), unset_env=unset_env)
        version = inst.spec_version
    _finish(name, "update", wait, ("running",), timeout, output, version, inline)


@app.command("scale")
def scale(
    name: Name,
    replicas: Annotated[int, typer.Option(help="Desired replicas (tasks) of the service.")],
    wait: WaitOpt = False,
    inline: InlineOpt = False,
    timeout: TimeoutOpt = "5m",
    output: OutputOpt = Format.table,
) -> None:
    """Set the replicas of an instance on a swarm host (its service's tasks)."""
    from mno.nex import instances
    from mno.store.db import session_scope

    _check_provisioner(wait, inline)
    with session_scope() as s:
        version = instances.scale(s, name, replicas).spec_version
    _finish(name, "scale", wait, ("running",), timeout, output, version, inline)


@app.command("terminate")
def terminate(
    name: Name,
    purge_data: Annotated[
        bool, typer.Option("--purge-data", help="Also delete the data volume.")
    ] = False,
    yes: YesOpt = False,
    wait: WaitOpt = False,
    inline: InlineOpt = False,
    timeout: TimeoutOpt = "5m",
    output: OutputOpt = Format.table,
) -> None:
    """Terminate an instance: its containers are removed (the volume too with --purge-data)."""
    from mno.nex import instances
    from mno.store.db import session_scope

    confirm(f"terminate instance {name}" + (" and delete its data" if purge_data else ""), yes)
    _check_provisioner(wait, inline)
    with session_scope() as s:
        inst = instances.terminate(s, name, purge_data=purge_data)
        ref, version = str(inst.id), inst.spec_version
    _finish(ref, "terminate", wait, ("terminated",), timeout, output, version, inline)


@app.command("orphans")
def orphans(output: OutputOpt = Format.table) -> None:
    """Labelled containers that no live instance owns."""
    from mno.nex import drift

    render(drift.orphans(), output, empty="No orphaned containers.")


@app.command("export")
def export(
    name: Name,
    out: Annotated[
        Path | None, typer.Option("--out", help="Tar file (default under $MNO_HOME/backups/).")
    ] = None,
    output: OutputOpt = Format.table,
    legacy_to: Annotated[Path | None, typer.Option("--to", hidden=True)] = None,
) -> None:
    """Write a tar of the instance's data volume, with FILE.sha256 beside it (a one-off
    export; `mno instance backup` keeps scheduled snapshots)."""
    from mno.cli.params import deprecated_out
    from mno.nex import backups

    to = deprecated_out(out, legacy_to, "--to")

    with spinner(f"exporting {name}"):
        result = backups.backup(name, to)
    done(result, f"export of {name}: {result['file']} (sha256 {result['sha256'][:12]}…)", output)


@backup_app.command("create")
def backup_create(name: Name, output: OutputOpt = Format.table) -> None:
    """Back up the instance's data volume to the restic repository now."""
    from mno.nex import offsite_backups

    with spinner(f"backing up {name}"):
        result = offsite_backups.create(name)
    message = f"backup of {name}: snapshot {result['snapshot']} ({result['bytes']} bytes)"
    done(result, message, output)


@backup_app.command("list")
def backup_list(
    name: Name,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """The instance's snapshots in the restic repository, oldest first (the cursor is a
    snapshot id)."""
    from mno.nex import offsite_backups

    rows = offsite_backups.list_snapshots(name)
    if after is not None:
        at = [n for n, r in enumerate(rows) if after in (r["id"], r["snapshot"])]
        if not at:
            raise BadInput(f"--after {after}: no snapshot of {name} has that id")
        rows = rows[at[0] + 1 :]
    empty = f"No snapshots of {name} (mno instance backup create {name})."
    if all_ or len(rows) <= limit:
        render(rows, output, columns=BACKUP_COLUMNS, empty=empty)
        return
    render_page(rows[:limit], rows[limit - 1]["id"], output, columns=BACKUP_COLUMNS, empty=empty)


@backup_app.command("restore")
def backup_restore(
    name: Name,
    snapshot_id: Annotated[str, typer.Argument(help="Snapshot id (or a unique prefix).")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Replace the instance's data volume with a snapshot (checksum verified first)."""
    from mno.nex import offsite_backups

    confirm(f"replace the data of instance {name} with snapshot {snapshot_id}", yes)
    with spinner(f"restoring {name} from {snapshot_id}"):
        result = offsite_backups.restore(name, snapshot_id)
    done(result, f"restored {name} from snapshot {result['snapshot']}", output)


@app.command("restore")
def restore(
    name: Name,
    file: Annotated[
        Path, typer.Argument(help="A tar written by `mno instance export`, FILE.sha256 beside it.")
    ],
    keep_previous: Annotated[
        bool,
        typer.Option(
            "--keep-previous/--no-keep-previous",
            help="Keep the replaced volume for retention.previous_volumes (default 7d), or "
            "remove it once the instance is healthy on the restored data.",
        ),
    ] = True,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Restore the instance's data from a backup onto a fresh volume (verified first).

    The checksum and the whole tar are checked before anything changes; the instance
    switches to the fresh volume only once healthy on it, else it runs on its previous data
    again (exit 1)."""
    from mno.agents import config, provisioner
    from mno.nex import backups
    from mno.nex.containers import Options

    confirm(f"replace the data of instance {name} with {file}", yes)
    # the new container gets the health settings the provisioner gives containers
    agent = config.load().agents.get("provisioner")
    opts = Options.from_dict({**provisioner.DEFAULT_OPTIONS, **(agent.options if agent else {})})
    with spinner(f"restoring {name}"):
        result = backups.restore(name, file, keep_previous=keep_previous, opts=opts)
    kept = result["previous_volume"]
    note = f"; previous volume {kept} kept until {result['previous_volume_until']}" if kept else ""
    done(result, f"restored {name} from {file} onto volume {result['volume']}{note}", output)


@domain_app.command("add")
def domain_add(
    name: Name,
    domain: Annotated[str, typer.Argument(help="e.g. crm.acme.com (a CNAME to the host).")],
    output: OutputOpt = Format.table,
) -> None:
    """Route a custom domain to the instance (the provisioner updates its router labels)."""
    from mno.nex import instances
    from mno.store.db import session_scope

    with session_scope() as s:
        inst = instances.add_domain(s, name, domain)
        view = instances.view(s, inst).as_dict()
    done(view, f"{domain} → {name}", output)


@domain_app.command("remove")
def domain_remove(
    name: Name,
    domain: Annotated[str, typer.Argument(help="The domain to stop routing.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Stop routing a custom domain to the instance."""
    from mno.nex import instances
    from mno.store.db import session_scope

    confirm(f"stop routing {domain} to instance {name}", yes)
    with session_scope() as s:
        inst = instances.remove_domain(s, name, domain)
        view = instances.view(s, inst).as_dict()
    done(view, f"{domain} removed from {name}", output)
