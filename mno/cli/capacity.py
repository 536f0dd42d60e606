"""mno host capacity, drain, activate and label: headroom and the nodes of swarm hosts.

The commands join ``mno host`` (``mno.cli.nex``); the domain lives in
``mno.nex.capacity`` and ``mno.nex.swarm_nodes``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.nex import NODE_COLUMNS, host_app
from mno.cli.output import Format, OutputOpt, console, render
from mno.cli.params import YesOpt, confirm
from mno.errors import BadInput

CAPACITY_COLUMNS = [
    "host",
    "node",
    "runtime",
    "availability",
    "instances",
    "slots_free",
    "memory_capacity",
    "memory_free",
    "memory_free_pct",
    "cpus",
    "cpus_free",
    "low",
    "error",
]
WAITING_COLUMNS = ["name", "tenant", "app", "tier", "memory", "cpus", "since", "reason"]
HostOpt = Annotated[
    str | None, typer.Option("--host", help="The swarm host (default: the only one).")
]
NodeArg = Annotated[str, typer.Argument(help="Node hostname or id (prefix).")]

__all__ = ["host_app"]


@host_app.command("capacity")
def host_capacity(output: OutputOpt = Format.table) -> None:
    """Headroom per host and swarm node (memory, CPUs, instance slots) and the instances
    waiting for room (pending_capacity)."""
    from mno.nex import capacity
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        data = capacity.report(s)
    if Format(output) in (Format.json, Format.yaml):
        render(data, output)
        return
    render(data["hosts"], output, columns=CAPACITY_COLUMNS, empty="No hosts.")
    waiting = data["waiting"]
    if waiting["instances"]:
        console().print(
            f"\n{waiting['instances']} instance(s) waiting for room "
            f"({waiting['memory']} bytes of memory):"
        )
        render(waiting["items"], output, columns=WAITING_COLUMNS)
    else:
        console().print("\nNo instance is waiting for room.")


def _node_done(node: dict[str, Any], message: str, output: Format) -> None:
    if Format(output) in (Format.json, Format.yaml):
        render(node, output)
        return
    render(node, output, columns=NODE_COLUMNS[1:])
    console().print(message)


@host_app.command("drain")
def host_drain(
    node: NodeArg, host: HostOpt = None, yes: YesOpt = False, output: OutputOpt = Format.table
) -> None:
    """Drain a swarm node: Swarm moves its tasks to other nodes (on a single node they stop
    until it is active again)."""
    from mno.nex import swarm_nodes
    from mno.store.db import session_scope

    confirm(f"drain node {node}", yes)
    with session_scope() as s:
        row = swarm_nodes.set_availability(s, node, "drain", host)
    _node_done(row, f"node {node} drained", output)


@host_app.command("activate")
def host_activate(node: NodeArg, host: HostOpt = None, output: OutputOpt = Format.table) -> None:
    """Make a drained or paused swarm node take tasks again."""
    from mno.nex import swarm_nodes
    from mno.store.db import session_scope

    with session_scope() as s:
        row = swarm_nodes.set_availability(s, node, "active", host)
    _node_done(row, f"node {node} active", output)


@host_app.command("label")
def host_label(
    node: NodeArg,
    label: Annotated[
        str,
        typer.Argument(
            metavar="KEY=VALUE", help="key=value to set, key- to unset (e.g. tier=silo)."
        ),
    ],
    host: HostOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Set a label of a swarm node, or unset it with key- (tiers place instances with
    node labels)."""
    from mno.nex import swarm_nodes
    from mno.store.db import session_scope

    changes: dict[str, str | None]
    if label.endswith("-") and "=" not in label:
        changes = {label[:-1]: None}
    elif "=" in label:
        key, _, value = label.partition("=")
        changes = {key: value}
    else:
        raise BadInput(f"invalid label {label!r}", "key=value, or key- to unset it")
    with session_scope() as s:
        row = swarm_nodes.set_labels(s, node, changes, host)
    _node_done(row, f"node {node} labelled", output)
