"""Restoring an instance's data volume from a backup (``mno.nex.backups``): a tar whose
entries sit under the volume directory's name, with ``FILE.sha256`` beside it.

``restore(ref, FILE)`` never touches the instance's data before the new data is known to
work:

1. verify: ``FILE.sha256`` must match, and the whole tar is read once, as a stream, to its
   end-of-archive block (a truncated, damaged or foreign file is refused with ``BadInput``;
   nothing has changed);
2. fill: the instance is leased (so the provisioner leaves it alone) and the row names the
   fresh volume (``restore_volume``, ``<volume>-r<deploy>``); the tar is streamed from the
   file into that volume through a created, never started, helper container, in blocks
   (memory stays flat for any size);
3. swap: the current container stops (it is kept), a new container starts on the fresh
   volume and must become healthy. Only then one transaction records the new volume and
   container, keeps the replaced volume's name in ``previous_volume`` until
   ``previous_volume_until`` (``retention.previous_volumes``, default 7d; the housekeeper
   removes it then), releases the lease and writes the audit row and the
   ``instance.restored`` event. ``keep_previous=False`` removes the replaced volume at once.
   When the new container does not become healthy, it is removed with the fresh volume and
   the previous container starts again: the restore fails (``RestoreFailed``) and says why.

A crash at any point leaves the store naming either the previous container and volume
(untouched, at worst stopped) or the new ones. The lease held the instance with ``work``
pending; once it expires, the provisioner takes it, removes what the interrupted restore
left (the containers on ``restore_volume``, then the volume) and starts the instance on
the volume the store names (``mno.nex.reconcile``).

On a swarm host (``_restore_service``) the steps are the same, with the service in place
of the container: the fresh volume is filled on the node the service is pinned to, the
swap is a ``stop-first`` service update that mounts it and must complete with the tasks
running healthy; else the previous spec goes back (Swarm may have rolled it back
already) and the fresh volume is removed. A crash after the update leaves the service on
the fresh volume while the store names the previous one: the provisioner's next pass
sees the mount differ and updates the service back, then removes the fresh volume.

Test hook: with ``MNO_TEST_RESTORE_PAUSE=<stage>`` (``filled``: the fresh volume holds the
backup; ``stopped``: the previous container is stopped; ``started``: the new container
started; ``swapped``: the store names the new volume, the previous container is not yet
removed) the restore writes ``restore paused at <stage>`` to stderr and sleeps there for
an hour, so that a test can kill the process at that point.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import sys
import tarfile
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from mno import clock, platform, settings
from mno.errors import BadInput, Conflict, InvalidTransition, MnoError
from mno.nex import containers, hosts, instances, runtime_docker, runtime_swarm, snapshot
from mno.nex.status import LeaseLost
from mno.nex.status import apply as apply_status
from mno.store import audit, outbox
from mno.store.db import session_scope
from mno.store.models.nex import Instance
from mno.store.types import table_of

if TYPE_CHECKING:
    from mno.nex.runtime_docker import Runtime
    from mno.nex.runtime_swarm import SwarmRuntime
    from mno.nex.snapshot import Snapshot


class RestoreFailed(MnoError):
    """A restore was undone: the instance runs on its previous data again (exit 1)."""


LEASE = timedelta(minutes=15)
RENEW_EVERY_S = 60.0
_BLOCK = 1 << 20


class _Reader:
    """A file read once, front to back, through a SHA-256 digest."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.digest.update(data)
        return bytes(data)

    def drain(self) -> None:
        while self.read(_BLOCK):
            pass


def _expected_sum(path: Path) -> str:
    if not path.is_file():
        raise BadInput(f"backup file {path} does not exist")
    sums = path.with_name(path.name + ".sha256")
    if not sums.is_file():
        raise BadInput(f"no checksum file {sums.name} beside {path.name}", "restore needs both")
    words = sums.read_text(errors="replace").split()
    if not words or not re.fullmatch(r"[0-9a-fA-F]{64}", words[0]):
        raise BadInput(f"{sums.name} holds no SHA-256 checksum", "expected sha256sum format")
    return words[0].lower()


def _read_tar(reader: _Reader, name: str, root: str | None) -> str | None:
    """Read the whole tar as a stream; what is wrong with it, or None."""
    try:
        tf = tarfile.open(fileobj=cast("Any", reader), mode="r|*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        return f"backup {name} is not a tar archive ({exc})"
    seen = 0
    try:
        with tf:
            for member in tf:
                seen += 1
                top = member.name.lstrip("./").split("/", 1)[0] if member.name else ""
                if root is not None and top != root:
                    return (
                        f"backup {name} holds {member.name!r}, outside {root}/ "
                        "(the volume directory's name)"
                    )
                if member.isfile():
                    data = tf.extractfile(member)
                    assert data is not None
                    while data.read(_BLOCK):
                        pass
            # a complete archive ends with a zero block; without it the file was cut short
            # at a member boundary, which tarfile alone accepts
            if tf.fileobj.tell() < tf.offset + tarfile.BLOCKSIZE:
                return f"backup {name} is truncated (no end-of-archive block)"
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        if seen == 0:
            return f"backup {name} is not a tar archive ({exc})"
        return f"backup {name} is truncated or damaged after {seen} entries ({exc})"
    if seen == 0:
        return f"backup {name} is an empty archive"
    return None


def verify(path: Path, root: str | None = None) -> str:
    """Check a backup before anything is changed: ``FILE.sha256`` matches and the whole
    tar reads to its end (every entry under ``root/`` when given), in one streaming pass.
    Returns the checksum; a bad file raises ``BadInput``."""
    path = Path(path)
    expected = _expected_sum(path)
    with open(path, "rb") as fh:
        reader = _Reader(fh)
        problem = _read_tar(reader, path.name, root)
        reader.drain()
    if reader.digest.hexdigest() != expected:
        raise BadInput(f"backup {path.name} does not match its checksum", "the file is damaged")
    if problem:
        raise BadInput(problem, "nothing was changed")
    return expected


class _Lease:
    """The restore's hold on the instance: taken with the fresh volume's name and ``work``
    pending (so that the provisioner repairs the instance if the restore dies), renewed
    while the restore runs, fenced on the owner."""

    def __init__(self, iid: uuid.UUID, owner: str, db_url: str | None) -> None:
        self.iid, self.owner, self.db_url = iid, owner, db_url
        self.renewed = 0.0

    def take(self, volume: str) -> None:
        now = clock.now()
        t = table_of(Instance)
        with session_scope(self.db_url) as s:
            taken = cast(
                "CursorResult[Any]",
                s.execute(
                    sa.update(t)
                    .where(
                        t.c.id == self.iid,
                        t.c.restore_volume.is_(None),
                        sa.or_(t.c.lease_until.is_(None), t.c.lease_until < now),
                    )
                    .values(
                        lease_owner=self.owner,
                        lease_until=now + LEASE,
                        restore_volume=volume,
                        work="pending",
                        next_attempt_at=now,
                    )
                ),
            ).rowcount
        if not taken:
            raise Conflict(
                "the provisioner or another restore is working on this instance",
                "try again in a moment; what an interrupted restore left is cleared by the "
                "provisioner once its lease expires",
            )
        self.renewed = time.monotonic()

    def renew(self, force: bool = True) -> None:
        if not force and time.monotonic() - self.renewed < RENEW_EVERY_S:
            return
        t = table_of(Instance)
        with session_scope(self.db_url) as s:
            kept = cast(
                "CursorResult[Any]",
                s.execute(
                    sa.update(t)
                    .where(t.c.id == self.iid, t.c.lease_owner == self.owner)
                    .values(lease_until=clock.now() + LEASE)
                ),
            ).rowcount
        if not kept:
            raise LeaseLost("the restore lost its lease on the instance", "nothing was swapped")
        self.renewed = time.monotonic()

    def release(self, *, cleared: bool, why: str | None = None, **fields: Any) -> None:
        """Give the instance back after a restore that did not swap. ``work`` stays
        pending, so the provisioner checks the instance runs; ``restore_volume`` is kept
        when the fresh volume could not be removed (the provisioner removes it). With
        ``why``, the undone restore is audited."""
        t = table_of(Instance)
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None, **fields}
        if cleared:
            values["restore_volume"] = None
        with session_scope(self.db_url) as s:
            s.execute(
                sa.update(t)
                .where(t.c.id == self.iid, t.c.lease_owner == self.owner)
                .values(**values)
            )
            inst = s.get(Instance, self.iid) if why else None
            if inst is not None and why:
                audit.record(
                    s,
                    "instance.restore_undone",
                    target_type="instance",
                    target_id=inst.id,
                    target=inst.name,
                    after={"error": why[:2000], "volume": inst.volume},
                    tenant_id=inst.tenant_id,
                )


class _Upload:
    """The backup file as the body of the archive upload: read in blocks (the engine gets
    its length), renewing the lease as the upload goes."""

    def __init__(self, fh: Any, size: int, lease: _Lease) -> None:
        self.fh, self.size, self.lease = fh, size, lease

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Any:
        return iter(lambda: self.read(_BLOCK), b"")

    def read(self, size: int = -1) -> bytes:
        self.lease.renew(force=False)
        return bytes(self.fh.read(size if size and size > 0 else _BLOCK))


def _pause(stage: str) -> None:
    """The test hook (see the module docstring)."""
    if os.environ.get(settings.ENV_TEST_RESTORE_PAUSE) == stage:
        sys.stderr.write(f"restore paused at {stage}\n")
        sys.stderr.flush()
        time.sleep(3600)


def fresh_volume_name(current: str, deploy: int) -> str:
    """The name of the volume a restore fills: ``<base>-r<deploy>``."""
    base = re.sub(r"-r\d+$", "", current)
    return f"{base}-r{deploy}"


def retention() -> timedelta | None:
    """How long a restore keeps the volume it replaced (None: for ever, ``0``)."""
    keep = settings.parse_duration(platform.load().retention.previous_volumes)
    return keep if keep.total_seconds() > 0 else None


def clear_restore(rt: Runtime, snap: Snapshot) -> bool:
    """Remove what an unfinished restore left: the containers mounting the fresh volume
    (never the instance's own), then the volume. True when nothing is left."""
    volume = snap.restore_volume
    if not volume or volume in (snap.volume, snap.previous_volume):
        return True
    for cid in rt.volume_users(volume):
        if cid != snap.container_id:
            rt.remove(cid)
    rt.remove_volume(volume)
    return not rt.volume_exists(volume)


def remove_volume(rt: Runtime, volume: str, keep_container: str | None) -> bool:
    """Remove a volume an instance no longer uses, with the (stopped) containers that
    still mount it; True when it is gone."""
    for cid in rt.volume_users(volume):
        if cid == keep_container:
            return False
        rt.remove(cid)
    rt.remove_volume(volume)
    return not rt.volume_exists(volume)


def restore(
    ref: str,
    path: Path,
    *,
    db_url: str | None = None,
    ready_timeout_s: float = 60.0,
    keep_previous: bool = True,
    opts: containers.Options | None = None,
) -> dict[str, Any]:
    """Replace the instance's data with a backup, safely (see the module docstring)."""
    path = Path(path)
    opts = opts or containers.Options(ready_timeout_s=ready_timeout_s)
    with session_scope(db_url, write=False) as s:
        iid = instances.get(s, ref).id
    snap = _restorable(iid, db_url)
    assert snap.volume_path
    root = posixpath.basename(snap.volume_path.rstrip("/"))
    checksum = verify(path, root)
    host = snapshot.host_of(snap)
    rt = runtime_docker.runtime(host)
    old_volume = containers.volume_name(snap)
    assert old_volume
    deploy = snap.deploy + 1
    new_volume = fresh_volume_name(old_volume, deploy)
    if host.runtime == "swarm":
        return _restore_service(snap, path, checksum, db_url, keep_previous, opts)
    lease, snap = _hold(iid, old_volume, deploy, new_volume, db_url)
    fresh = replace(snap, volume=new_volume)
    old = rt.inspect(snap.container_id, snap.port) if snap.container_id else None
    was_running = old is not None and old.status == "running"
    new_id: str | None = None
    try:
        _fill(rt, fresh, host, path, lease)
        _pause("filled")
        lease.renew()
        if old is not None and was_running:
            rt.stop(old.id, opts.stop_timeout_s)
        _pause("stopped")
        lease.renew()
        new_spec = containers.spec(fresh, host, deploy, opts)
        new_spec.labels["mno.restore"] = new_volume
        stale = rt.inspect(new_spec.name)
        if stale is not None and stale.id != snap.container_id:
            rt.remove(stale.id)  # never reuse a container that mounts another volume
        new_id = rt.create(new_spec)
        fields: dict[str, Any] = {"container_id": new_id, "container_name": new_spec.name}
        status = "stopped"
        if snap.desired == "running":
            rt.start(new_id)
            _pause("started")
            ready = rt.wait_ready(new_id, snap.port, opts.ready_timeout_s)
            fields |= {"endpoint": containers.endpoint(host, ready.host_port)}
            fields["started_at"] = clock.now()
            status = "running"
        lease.renew()
        keep_for = retention() if keep_previous else timedelta(0)
        until = clock.now() + keep_for if keep_for is not None else None
        superseded = _swap(
            snap, lease, status, deploy, new_volume, old_volume, until, path, checksum, fields
        )
    except BaseException as exc:  # undone, then re-raised (or reported as RestoreFailed)
        why = exc.message if isinstance(exc, MnoError) else f"{type(exc).__name__}: {exc}"
        _undo(rt, snap, old if was_running else None, new_id, new_volume, lease, opts, why)
        if isinstance(exc, runtime_docker.Unhealthy):
            raise RestoreFailed(
                f"restore of {snap.name} undone: the instance did not become healthy on the "
                f"restored data ({why})",
                "it runs on its previous data again",
            ) from exc
        raise
    _pause("swapped")
    # the store names the new container and volume: what follows is tidying, which the
    # housekeeper redoes if it is interrupted
    if old is not None:
        rt.remove(old.id)
    return _tidy_volumes(
        rt,
        snap,
        {"file": str(path), "sha256": checksum, "status": status},
        new_volume,
        old_volume,
        superseded,
        keep_previous,
        until,
        new_id,
        db_url,
    )


def _hold(
    iid: uuid.UUID, old_volume: str, deploy: int, new_volume: str, db_url: str | None
) -> tuple[_Lease, Snapshot]:
    """Lease the instance for the restore; the instance as it is once held."""
    lease = _Lease(iid, f"restore:{os.getpid()}:{uuid.uuid4().hex[:6]}", db_url)
    lease.take(new_volume)
    try:
        snap = _restorable(iid, db_url)  # as it is now that we hold it
        if snap.deploy + 1 != deploy or containers.volume_name(snap) != old_volume:
            raise Conflict(f"instance {snap.name} changed meanwhile", "try again")
    except MnoError:
        lease.release(cleared=True)
        raise
    return lease, snap


def _restore_service(
    snap: Snapshot,
    path: Path,
    checksum: str,
    db_url: str | None,
    keep_previous: bool,
    opts: containers.Options,
) -> dict[str, Any]:
    """The restore of an instance on a swarm host: the fresh volume is filled on the node
    that holds the current one (the node the service is pinned to), then the service is
    updated to mount it (``stop-first``: one writer) and must converge healthy; else the
    service gets its previous spec back, on the previous volume."""
    from mno.nex import services

    host = snapshot.host_of(snap)
    rt, current = services.volume_node(snap)  # the right node, before anything changes
    if current is None:
        raise InvalidTransition(
            f"instance {snap.name} has no service on host {host.name}",
            "the provisioner recreates it; restore once it runs",
        )
    assert snap.volume_path
    old_volume = containers.volume_name(snap)
    assert old_volume
    deploy = snap.deploy + 1
    new_volume = fresh_volume_name(old_volume, deploy)
    volume_path = snap.volume_path
    lease, snap = _hold(snap.id, old_volume, deploy, new_volume, db_url)
    name = services.service_name(snap)
    fresh = replace(snap, volume=new_volume)
    previous: dict[str, Any] | None = None
    try:
        current = rt.service(name)
        if current is None:
            raise InvalidTransition(f"the service of instance {snap.name} is gone", "try again")
        previous = current.spec
        _fill(rt, fresh, host, path, lease)
        _pause("filled")
        lease.renew()
        wanted = runtime_swarm.with_volume(previous, volume_path, new_volume)
        wanted["Labels"] = dict(wanted.get("Labels") or {}) | {"mno.deploy": str(deploy)}
        rt.put_spec(current, wanted)
        _pause("started")
        fields: dict[str, Any] = {"container_id": None}
        status = "stopped"
        if current.replicas:
            wait = opts.ready_timeout_s + current.replicas * opts.health_start_period_s / 2
            done = rt.wait_update(name, current.update_started, wait * 2 + 30)
            if done.update_state not in runtime_swarm.DONE:
                raise runtime_docker.Unhealthy(
                    f"swarm: update {done.update_state} ({done.update_message or 'no message'})"
                )
            lease.renew()
            tasks = rt.wait_converged(name, current.replicas, snap.port, wait)
            fields["endpoint"] = services.endpoint_of(rt, host, done, tasks, snap.port)
            fields["tasks_running"] = len(tasks)
            fields["started_at"] = clock.now()
            status = "running"
        lease.renew()
        keep_for = retention() if keep_previous else timedelta(0)
        until = clock.now() + keep_for if keep_for is not None else None
        superseded = _swap(
            snap, lease, status, deploy, new_volume, old_volume, until, path, checksum, fields
        )
    except BaseException as exc:  # undone, then re-raised (or reported as RestoreFailed)
        why = exc.message if isinstance(exc, MnoError) else f"{type(exc).__name__}: {exc}"
        _undo_service(rt, snap, previous, new_volume, lease, opts, why)
        if isinstance(exc, runtime_docker.Unhealthy):
            raise RestoreFailed(
                f"restore of {snap.name} undone: the service did not become healthy on the "
                f"restored data ({why})",
                "it runs on its previous data again",
            ) from exc
        raise
    _pause("swapped")
    # tidying, which the housekeeper redoes if it is interrupted: the replaced tasks'
    # containers still mount the previous volume until Swarm prunes them
    return _tidy_volumes(
        rt,
        snap,
        {"file": str(path), "sha256": checksum, "status": status},
        new_volume,
        old_volume,
        superseded,
        keep_previous,
        until,
        None,
        db_url,
    )


def _undo_service(
    rt: SwarmRuntime,
    snap: Snapshot,
    previous: dict[str, Any] | None,
    new_volume: str,
    lease: _Lease,
    opts: containers.Options,
    why: str,
) -> None:
    """Put the service back on its previous spec and volume (Swarm may have rolled it
    back already), then remove the fresh volume; what is left is for the provisioner."""
    from mno.nex import services

    cleared = False
    fields: dict[str, Any] = {}
    try:
        name = services.service_name(snap)
        state = rt.service(name)
        if previous is not None and state is not None:
            if runtime_swarm.mounted_volume(state.spec, snap.volume_path) == new_volume:
                rt.put_spec(state, previous)
                state = rt.service(name)
            if state is not None and state.replicas:
                tasks = rt.wait_converged(name, state.replicas, snap.port, opts.ready_timeout_s)
                host = snapshot.host_of(snap)
                fields["endpoint"] = services.endpoint_of(rt, host, state, tasks, snap.port)
                fields["tasks_running"] = len(tasks)
        cleared = clear_restore(rt, replace(snap, restore_volume=new_volume))
    except (MnoError, OSError):
        pass  # the provisioner finishes the repair once the lease is released
    finally:
        lease.release(cleared=cleared, why=why, **fields)


def _restorable(iid: uuid.UUID, db_url: str | None) -> Snapshot:
    snap = snapshot.load(iid, db_url)
    assert snap is not None
    if snap.desired == "terminated" or snap.status == "terminated":
        raise InvalidTransition(f"instance {snap.name} is {snap.status}", "restore into a live one")
    if not snap.volume_path:
        raise BadInput(f"instance {snap.name} has no data volume")
    if not snap.host:
        raise InvalidTransition(
            f"instance {snap.name} is not provisioned yet", "wait until it is running"
        )
    return snap


def _fill(rt: Runtime, fresh: Snapshot, host: Any, path: Path, lease: _Lease) -> None:
    """Stream the tar into the fresh volume through a created (never started) container."""
    assert fresh.volume and fresh.volume_path
    base = containers.base_labels(fresh)
    if rt.volume_exists(fresh.volume):  # left by an earlier attempt: start from empty
        remove_volume(rt, fresh.volume, None)
    rt.ensure_volume(
        fresh.volume, base | {"mno.instance": str(fresh.id), "mno.restore": fresh.volume}
    )
    if host.runtime != "swarm":
        containers.prepare(fresh, rt)  # the tenant's network, for the new container
    labels = base | {"mno.instance": str(fresh.id), "mno.helper": "1", "mno.restore": fresh.volume}
    helper = containers.helper_spec(fresh, host, "restore", labels)
    ref = rt.create(helper)
    try:
        parent = posixpath.dirname(fresh.volume_path.rstrip("/")) or "/"
        with open(path, "rb") as fh:
            rt.put_archive(ref, parent, cast("Any", _Upload(fh, path.stat().st_size, lease)))
    finally:
        rt.remove(ref)


def _undo(
    rt: Runtime,
    snap: Snapshot,
    old: runtime_docker.ContainerState | None,
    new_id: str | None,
    new_volume: str,
    lease: _Lease,
    opts: containers.Options,
    why: str,
) -> None:
    """Put the instance back on its previous container and volume, as far as possible;
    what is left is for the provisioner (``work`` stays pending)."""
    cleared = False
    fields: dict[str, Any] = {}
    try:
        if new_id:
            rt.remove(new_id)
        if old is not None:
            rt.start(old.id)
            ready = rt.wait_ready(old.id, snap.port, opts.ready_timeout_s)
            # a restarted container gets a new host port
            fields["endpoint"] = containers.endpoint(snapshot.host_of(snap), ready.host_port)
        cleared = clear_restore(rt, replace(snap, restore_volume=new_volume))
    except (MnoError, OSError):
        pass  # the provisioner finishes the repair once the lease is released
    finally:
        lease.release(cleared=cleared, why=why, **fields)


def _swap(
    snap: Snapshot,
    lease: _Lease,
    status: str,
    deploy: int,
    new_volume: str,
    old_volume: str,
    until: datetime | None,
    path: Path,
    checksum: str,
    fields: dict[str, Any],
) -> str | None:
    """Record the restored instance in one transaction; the volume an earlier restore kept,
    which this one supersedes."""
    with session_scope(lease.db_url) as s:
        inst = s.get(Instance, snap.id)
        if inst is None or inst.lease_owner != lease.owner:
            raise LeaseLost(f"instance {snap.name} is no longer leased to this restore")
        superseded = inst.previous_volume
        done = inst.spec_version <= inst.applied_version
        apply_status(
            s,
            inst,
            status,
            **fields,
            deploy=deploy,
            volume=new_volume,
            previous_volume=old_volume,
            previous_volume_until=until,
            restore_volume=None,
            drift=None,
            last_error=None,
            lease_owner=None,
            lease_until=None,
            work="idle" if done else "pending",
        )
        audit.record(
            s,
            "instance.restore",
            target_type="instance",
            target_id=snap.id,
            target=snap.name,
            before={"volume": old_volume, "container_id": snap.container_id},
            after={
                "file": path.name,
                "sha256": checksum,
                "volume": new_volume,
                "container_id": fields.get("container_id"),
                "previous_volume_until": audit.jsonable(until),
            },
            tenant_id=snap.tenant_id,
        )
        outbox.emit(
            s,
            "instance.restored",
            {
                "id": str(snap.id),
                "name": snap.name,
                "sha256": checksum,
                "volume": new_volume,
                "previous_volume": old_volume,
            },
            snap.tenant_id,
        )
    return superseded


def forget_previous(
    iid: uuid.UUID, volume: str, db_url: str | None = None, actor: str | None = None
) -> None:
    """Record that the volume a restore kept is removed (one transaction with its audit
    row and event)."""
    with session_scope(db_url) as s:
        inst = s.get(Instance, iid)
        if inst is None or inst.previous_volume != volume:
            return
        inst.previous_volume = None
        inst.previous_volume_until = None
        inst.touch()
        s.add(inst)
        audit.record(
            s,
            "instance.previous_volume_removed",
            target_type="instance",
            target_id=inst.id,
            target=inst.name,
            before={"previous_volume": volume},
            tenant_id=inst.tenant_id,
            actor=actor,
        )
        outbox.emit(
            s,
            "instance.previous_volume_removed",
            {"id": str(inst.id), "name": inst.name, "volume": volume},
            inst.tenant_id,
        )


def remove_expired_previous(db_url: str | None = None, limit: int = 100) -> list[str]:
    """Remove the volumes restores replaced whose ``previous_volume_until`` has passed
    (instances a restore or the provisioner holds are left for the next pass); the
    ``instance:volume`` pairs removed."""
    now = clock.now()
    t = table_of(Instance)
    with session_scope(db_url, write=False) as s:
        rows = s.execute(
            sa.select(t.c.id, t.c.name, t.c.host, t.c.previous_volume, t.c.container_id)
            .where(
                t.c.previous_volume.is_not(None),
                t.c.previous_volume_until <= now,
                t.c.host.is_not(None),
                sa.or_(t.c.lease_until.is_(None), t.c.lease_until < now),
            )
            .limit(limit)
        ).all()
        known = hosts.configured(platform.load(), s)
    removed = []
    for iid, name, host, volume, container_id in rows:
        try:
            rt = runtime_docker.runtime(hosts.find(host, known))
            if not remove_volume(rt, volume, container_id):
                continue
        except MnoError:
            continue  # an unreachable host: the next pass tries again
        forget_previous(iid, volume, db_url, actor="housekeeper")
        removed.append(f"{name}:{volume}")
    return removed


def _tidy_volumes(
    rt: Any,
    snap: Any,
    result: dict[str, Any],
    new_volume: str,
    old_volume: str,
    superseded: str | None,
    keep_previous: bool,
    until: Any,
    keep_container: str | None,
    db_url: str | None,
) -> dict[str, Any]:
    """After a restore's swap: remove a volume an earlier restore left (``superseded``)
    and, without ``keep_previous``, the replaced one; ``keep_container`` is a container that may
    still mount them. The restore's answer, naming the volume kept and until when."""
    if superseded and superseded not in (new_volume, old_volume):
        remove_volume(rt, superseded, keep_container)
    kept: str | None = old_volume
    if not keep_previous and remove_volume(rt, old_volume, keep_container):
        forget_previous(snap.id, old_volume, db_url)
        kept = None
    return {
        "instance": snap.name,
        **result,
        "volume": new_volume,
        "previous_volume": kept,
        "previous_volume_until": audit.jsonable(until) if kept and until else None,
    }
