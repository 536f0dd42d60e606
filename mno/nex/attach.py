"""Reaching into an instance's container: its output (``mno instance logs``) and a
command run in it (``mno instance exec``).

Both go straight to the Docker engine of the instance's host, not through the
provisioner: they change nothing in the store. ``exec`` is non-interactive (no TTY, no
stdin) and returns the command's exit code; it needs the instance to be running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from mno.errors import BadInput, InvalidTransition
from mno.nex import hosts, instances, runtime_docker
from mno.store.db import session_scope


@dataclass
class Target:
    name: str
    status: str
    host: runtime_docker.Runtime
    container_id: str


def target(ref: str, db_url: str | None = None) -> Target:
    """The instance's container and the runtime of its host (``InvalidTransition`` when
    it has no container yet)."""
    with session_scope(db_url, write=False) as s:
        inst = instances.get(s, ref)
        if not inst.host or not inst.container_id:
            raise InvalidTransition(
                f"instance {inst.name} has no container yet", "see `mno instance show`"
            )
        config = hosts.get(inst.host, session=s)
        return Target(inst.name, inst.status, runtime_docker.runtime(config), inst.container_id)


def logs(
    ref: str,
    *,
    tail: int | None = None,
    follow: bool = False,
    since: datetime | None = None,
    db_url: str | None = None,
) -> Iterator[bytes]:
    """The container's output; with ``follow`` until the container stops."""
    if tail is not None and tail < 0:
        raise BadInput(f"invalid --tail {tail}", "0 or more lines")
    t = target(ref, db_url)
    return t.host.logs(t.container_id, tail=tail, follow=follow, since=since)


def run(
    ref: str,
    cmd: list[str],
    out: Callable[[bytes], None],
    err: Callable[[bytes], None],
    db_url: str | None = None,
) -> int:
    """Run ``cmd`` in the running instance's container; returns its exit code."""
    if not cmd:
        raise BadInput("no command given", "mno instance exec NAME -- CMD [ARG...]")
    t = target(ref, db_url)
    state = t.host.inspect(t.container_id)
    if t.status != "running" or state is None or state.status != "running":
        now = state.status if state is not None else "gone"
        raise InvalidTransition(
            f"instance {t.name} is {t.status} (container {now}); it cannot run a command",
            f"start it first: mno instance start {t.name}",
        )
    return t.host.exec(t.container_id, cmd, out, err)
