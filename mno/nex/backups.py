"""Backups of an instance's data volume: a tar file with a SHA-256 checksum beside it.

``backup()`` streams the volume's directory out of the instance's container (running or
stopped) into ``FILE`` and writes ``FILE.sha256`` (``sha256sum`` format). ``restore()``
checks the checksum, then replaces the volume: the current container is removed, the
volume recreated and filled from the tar in a new container, which starts (if the
instance should run) and must become healthy. The instance is leased for the duration,
so the provisioner does not work on it at the same time.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from mno import clock, settings
from mno.errors import BadInput, Conflict, InvalidTransition
from mno.nex import containers, hosts, instances, runtime_docker, snapshot
from mno.nex.status import record as record_status
from mno.store import audit, outbox
from mno.store.db import session_scope
from mno.store.models.nex import Instance
from mno.store.types import table_of

if TYPE_CHECKING:
    from mno.nex.runtime_docker import Runtime
    from mno.nex.snapshot import Snapshot


def backups_dir() -> Path:
    path = settings.home() / "backups"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_path(name: str) -> Path:
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    return backups_dir() / f"{name}-{stamp}.tar"


def _write(rt: Runtime, ref: str, volume_path: str, dest: Path) -> str:
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = dest.with_name(dest.name + ".part")
    with open(tmp, "wb") as fh:
        for chunk in rt.get_archive(ref, volume_path):
            digest.update(chunk)
            fh.write(chunk)
    os.replace(tmp, dest)
    checksum = digest.hexdigest()
    dest.with_name(dest.name + ".sha256").write_text(f"{checksum}  {dest.name}\n")
    return checksum


def _with_container(rt: Runtime, snap: Snapshot, fn: Any) -> Any:
    """Run ``fn(ref)`` with the instance's container, or a created (never started)
    helper container that mounts the volume when the instance has none."""
    if snap.container_id and rt.inspect(snap.container_id) is not None:
        return fn(snap.container_id)
    host = snapshot.host_of(snap)
    spec = containers.spec(snap, host, 0, containers.Options())
    spec.name = f"mno-{snap.name}-backup-{uuid.uuid4().hex[:6]}"
    spec.labels = {runtime_docker.MANAGED: "true", "mno.instance": str(snap.id), "mno.helper": "1"}
    spec.health_cmd = None
    ref = rt.create(spec)
    try:
        return fn(ref)
    finally:
        rt.remove(ref)


def final_backup(rt: Runtime, snap: Snapshot) -> Path:
    """The backup offboarding keeps before a volume is removed."""
    dest = default_path(snap.name)
    assert snap.volume_path
    _with_container(rt, snap, lambda ref: _write(rt, ref, str(snap.volume_path), dest))
    return dest


def backup(ref: str, to: Path | None = None, db_url: str | None = None) -> dict[str, Any]:
    """Write a backup of the instance's volume; returns path, size and checksum."""
    with session_scope(db_url, write=False) as s:
        inst = instances.get(s, ref)
        iid = inst.id
    snap = snapshot.load(iid, db_url)
    assert snap is not None
    if not snap.volume_path:
        raise BadInput(f"instance {snap.name} has no data volume", "its app sets no volume path")
    if not snap.host:
        raise InvalidTransition(f"instance {snap.name} was never provisioned; nothing to back up")
    rt = runtime_docker.runtime(hosts.find(snap.host, snap.hosts or hosts.configured()))
    dest = Path(to) if to else default_path(snap.name)
    checksum = _with_container(rt, snap, lambda r: _write(rt, r, str(snap.volume_path), dest))
    result = {
        "instance": snap.name,
        "file": str(dest),
        "bytes": dest.stat().st_size,
        "sha256": checksum,
    }
    with session_scope(db_url) as s:
        audit.record(
            s,
            "instance.backup",
            target_type="instance",
            target_id=snap.id,
            target=snap.name,
            after={"file": dest.name, "sha256": checksum, "bytes": result["bytes"]},
            tenant_id=snap.tenant_id,
        )
        outbox.emit(
            s,
            "instance.backed_up",
            {"id": str(snap.id), "name": snap.name, "sha256": checksum, "bytes": result["bytes"]},
            snap.tenant_id,
        )
    return result


def verify(path: Path) -> str:
    """The file's checksum, checked against ``FILE.sha256``."""
    if not path.is_file():
        raise BadInput(f"backup file {path} does not exist")
    sums = path.with_name(path.name + ".sha256")
    if not sums.is_file():
        raise BadInput(f"no checksum file {sums.name} beside {path.name}", "restore needs both")
    expected = sums.read_text().split()[0].strip().lower()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise BadInput(f"backup {path.name} does not match its checksum", "the file is damaged")
    return expected


def _lease(iid: uuid.UUID, owner: str, db_url: str | None, minutes: int = 15) -> None:
    now = clock.now()
    t = table_of(Instance)
    with session_scope(db_url) as s:
        taken = cast(
            "CursorResult[Any]",
            s.execute(
                sa.update(t)
                .where(t.c.id == iid, sa.or_(t.c.lease_until.is_(None), t.c.lease_until < now))
                .values(lease_owner=owner, lease_until=now + timedelta(minutes=minutes))
            ),
        ).rowcount
    if not taken:
        raise Conflict("the provisioner is working on this instance", "try again in a moment")


def _unlease(iid: uuid.UUID, owner: str, db_url: str | None) -> None:
    t = table_of(Instance)
    with session_scope(db_url) as s:
        s.execute(
            sa.update(t)
            .where(t.c.id == iid, t.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


def restore(
    ref: str, path: Path, *, db_url: str | None = None, ready_timeout_s: float = 60.0
) -> dict[str, Any]:
    """Replace the instance's volume with a backup (see the module docstring)."""
    path = Path(path)
    checksum = verify(path)
    with session_scope(db_url, write=False) as s:
        inst = instances.get(s, ref)
        iid = inst.id
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
    host = hosts.find(snap.host, snap.hosts or hosts.configured())
    rt = runtime_docker.runtime(host)
    owner = f"restore:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    _lease(iid, owner, db_url)
    try:
        for c in rt.list_managed():
            if c.labels.get("mno.instance") == str(snap.id):
                rt.remove(c.id)
        volume = containers.volume_name(snap)
        assert volume
        rt.remove_volume(volume)
        containers.prepare(snap, rt)
        deploy = snap.deploy + 1
        spec = containers.spec(snap, host, deploy, containers.Options())
        cid = rt.create(spec)
        parent = posixpath.dirname(snap.volume_path.rstrip("/")) or "/"
        rt.put_archive(cid, parent, path.read_bytes())
        fields: dict[str, Any] = {
            "container_id": cid,
            "container_name": spec.name,
            "deploy": deploy,
        }
        status = "stopped"
        if snap.desired == "running":
            rt.start(cid)
            ready = rt.wait_ready(cid, snap.port, ready_timeout_s)
            fields["endpoint"] = containers.endpoint(host, ready.host_port)
            fields["started_at"] = clock.now()
            status = "running"
        record_status(snap.id, owner, status=status, drift=None, db_url=db_url, **fields)
    finally:
        _unlease(iid, owner, db_url)
    with session_scope(db_url) as s:
        audit.record(
            s,
            "instance.restore",
            target_type="instance",
            target_id=snap.id,
            target=snap.name,
            after={"file": path.name, "sha256": checksum},
            tenant_id=snap.tenant_id,
        )
        outbox.emit(
            s,
            "instance.restored",
            {"id": str(snap.id), "name": snap.name, "sha256": checksum},
            snap.tenant_id,
        )
    return {"instance": snap.name, "file": str(path), "sha256": checksum, "status": status}
