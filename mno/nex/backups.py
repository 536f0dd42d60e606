"""Backups of an instance's data volume: a tar file with a SHA-256 checksum beside it.

``backup()`` streams the volume's directory out of the instance's container (running or
stopped) into ``FILE`` and writes ``FILE.sha256`` (``sha256sum`` format): a tar whose
entries sit under the volume directory's name (``data/...`` for ``/www/data``).
``restore(ref, FILE)`` puts such a file back, safely: see ``mno.nex.restores``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mno import clock, settings
from mno.errors import BadInput, InvalidTransition
from mno.nex import containers, hosts, instances, restores, runtime_docker, snapshot
from mno.store import audit, outbox
from mno.store.db import session_scope

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
    helper container that mounts the volume when the instance has none. On a swarm the
    instance has no container of its own: the helper is created through the manager mno
    talks to, which must be the node that holds the volume (``services.volume_node``)."""
    if snap.container_id and rt.inspect(snap.container_id) is not None:
        return fn(snap.container_id)
    host = snapshot.host_of(snap)
    if host.runtime == "swarm":
        from mno.nex import services

        services.volume_node(snap)
    labels = containers.base_labels(snap) | {"mno.instance": str(snap.id), "mno.helper": "1"}
    ref = rt.create(containers.helper_spec(snap, host, "backup", labels))
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


def restore(ref: str, path: Path, **kwargs: Any) -> dict[str, Any]:
    """Replace the instance's data with a backup (``mno.nex.restores.restore``)."""
    return restores.restore(ref, path, **kwargs)


def verify(path: Path, root: str | None = None) -> str:
    """Check a backup file (``mno.nex.restores.verify``); its checksum."""
    return restores.verify(path, root)
