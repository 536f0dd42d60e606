"""Reaching into an instance's container: its output (``mno instance logs``) and a
command run in it (``mno instance exec``).

Both go straight to the Docker engine of the instance's host, not through the
provisioner: they change nothing in the store. On a swarm host, ``logs`` are the
service's (every task's output, as ``docker service logs`` gives it) and ``exec`` runs in
the container of one running task on the node of the manager mno talks to. ``exec``
is non-interactive (no TTY, no stdin) and returns the command's exit code; it needs the
instance to be running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from mno.errors import BadInput, InvalidTransition
from mno.nex import hosts, instances, runtime_docker, runtime_swarm
from mno.store.db import session_scope


@dataclass
class Target:
    name: str
    status: str
    host: runtime_docker.Runtime
    container_id: str | None
    service: str | None = None  # on a swarm host: the instance's service
    port: int = 0


def target(ref: str, db_url: str | None = None) -> Target:
    """The instance's container (or service, on a swarm) and the runtime of its host
    (``InvalidTransition`` when it has none yet)."""
    with session_scope(db_url, write=False) as s:
        inst = instances.get(s, ref)
        config = hosts.get(inst.host, session=s) if inst.host else None
        if config is not None and config.runtime == "swarm" and inst.container_name:
            return Target(
                inst.name,
                inst.status,
                runtime_swarm.runtime(config),
                None,
                service=inst.container_name,
                port=inst.port,
            )
        if config is None or not inst.container_id:
            raise InvalidTransition(
                f"instance {inst.name} has no container yet", "see `mno instance show`"
            )
        return Target(inst.name, inst.status, runtime_docker.runtime(config), inst.container_id)


def logs(
    ref: str,
    *,
    tail: int | None = None,
    follow: bool = False,
    since: datetime | None = None,
    db_url: str | None = None,
) -> Iterator[bytes]:
    """The container's output (a swarm service's: all its tasks'); with ``follow`` until
    the container stops (the service is removed)."""
    if tail is not None and tail < 0:
        raise BadInput(f"invalid --tail {tail}", "0 or more lines")
    t = target(ref, db_url)
    if t.service is not None:
        assert isinstance(t.host, runtime_swarm.SwarmRuntime)
        return t.host.service_logs(t.service, tail=tail, follow=follow, since=since)
    assert t.container_id
    return t.host.logs(t.container_id, tail=tail, follow=follow, since=since)


def _task_container(t: Target) -> str:
    """The container of a running task of the service on this manager's node."""
    assert t.service is not None and isinstance(t.host, runtime_swarm.SwarmRuntime)
    here = t.host.node_id()
    tasks = [x for x in t.host.tasks(t.service, t.port, desired="running") if x.state == "running"]
    local = [x.container_id for x in tasks if x.container_id and x.node == here]
    if local:
        return local[0]
    if tasks:
        raise InvalidTransition(
            f"instance {t.name}: no task of service {t.service} runs on node {here}",
            "run `docker exec` on the node of one of its tasks (docker service ps)",
        )
    raise InvalidTransition(
        f"instance {t.name} is {t.status} (no running task); it cannot run a command",
        f"start it first: mno instance start {t.name}",
    )


def run(
    ref: str,
    cmd: list[str],
    out: Callable[[bytes], None],
    err: Callable[[bytes], None],
    db_url: str | None = None,
) -> int:
    """Run ``cmd`` in the running instance's container (on a swarm: one running task's);
    returns its exit code."""
    if not cmd:
        raise BadInput("no command given", "mno instance exec NAME -- CMD [ARG...]")
    t = target(ref, db_url)
    if t.service is not None:
        return t.host.exec(_task_container(t), cmd, out, err)
    assert t.container_id
    state = t.host.inspect(t.container_id)
    if t.status != "running" or state is None or state.status != "running":
        now = state.status if state is not None else "gone"
        raise InvalidTransition(
            f"instance {t.name} is {t.status} (container {now}); it cannot run a command",
            f"start it first: mno instance start {t.name}",
        )
    return t.host.exec(t.container_id, cmd, out, err)
