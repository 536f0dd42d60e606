"""Restic backups and restores of a stateful instance on a real (one-node) Docker Swarm:
the volume lives on the node the service is pinned to, read and filled through helper
containers on that node's engine; a restore points the service at a fresh volume with a
stop-first update and keeps the previous volume.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.nex.conftest import Nex, get_page, wait_for
from tests.nex.test_restic import _backup_tick, _backups, _password, _snapshot_count
from tests.nex.test_swarm import PLATFORM, _converge, _service, sw, swarm  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")


def _configure(nex: Nex, repo: Path, **backups: Any) -> None:
    lines = ["backups:", f"  repository: {json.dumps(str(repo))}"]
    lines += ["  password: secret:RESTIC_PASSWORD"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in backups.items()]
    nex.configure(PLATFORM + "\n".join(lines) + "\n")


def _task_container(nex: Nex, name: str) -> Any:
    """The container of the service's one running task."""

    def running() -> Any:
        tasks = _service(nex, name).tasks(filters={"desired-state": "running"})
        ids = [
            t["Status"]["ContainerStatus"]["ContainerID"]
            for t in tasks
            if t["Status"]["State"] == "running"
        ]
        return ids[0] if len(ids) == 1 else None

    return nex.client.containers.get(wait_for(running, timeout=30))


def _write(nex: Nex, name: str, text: str) -> None:
    code, out = _task_container(nex, name).exec_run(
        ["sh", "-c", f"printf '{text}' > /www/data/file.txt"]
    )
    assert code == 0, out


def _read(nex: Nex, name: str) -> str:
    code, out = _task_container(nex, name).exec_run(["cat", "/www/data/file.txt"])
    assert code == 0, out
    return str(out.decode())


def _dump(repo: Path, password: str, snapshot: str, filename: str) -> bytes:
    import os
    import subprocess

    return subprocess.run(
        ["restic", "--repo", str(repo), "--no-cache", "dump", snapshot, filename],
        env={**os.environ, "RESTIC_PASSWORD": password},
        capture_output=True,
        check=True,
    ).stdout


def _has_volume(nex: Nex, name: str) -> bool:
    return name in {v.name for v in nex.client.volumes.list()}


def _tar_file(data: bytes, member: str) -> bytes:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        got = tf.extractfile(member)
        assert got is not None
        return got.read()


def test_backup_of_a_swarm_instance_holds_the_volume_and_the_agent_backs_it_up(
    sw: Nex,  # noqa: F811
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = _password(monkeypatch)
    repo = tmp_path / "repo"
    _configure(sw, repo)
    tenant = sw.tenant(tier="silo")  # an overlay network of its own
    sw.app(backup_every="6h")
    name = sw.create(tenant, "web")
    view = _converge(sw, name)
    assert view["status"] == "running" and view["container_id"] is None
    _write(sw, name, "swarm data one\n")

    made = cli.json("instance", "backup", "create", name)
    assert made["instance"] == name and made["bytes"] > 0
    tar = _dump(repo, password, made["snapshot"], f"{name}.tar")
    assert _tar_file(tar, "data/file.txt") == b"swarm data one\n"
    # the helper is gone, the service was not touched
    assert not sw.client.containers.list(all=True, filters={"label": "mno.helper=1"})
    assert get_page(sw.get(name)["endpoint"], "/data/file.txt") == (200, "swarm data one\n")

    # the backup agent's scheduled run backs it up too, once due
    from datetime import timedelta

    from mno import clock

    clock.set_now(clock.now() + timedelta(hours=7))
    result = _backup_tick(sw)
    assert (result.done, result.failed) == (1, 0), result
    assert _snapshot_count(repo, password, view["id"]) == 2
    rows = _backups(sw.url, name)
    assert [(r["status"], r["trigger"]) for r in rows] == [
        ("succeeded", "manual"),
        ("succeeded", "schedule"),
    ]
    assert password not in json.dumps(made)


def test_restore_of_a_swarm_instance_swaps_the_volume_and_refuses_a_bad_snapshot(
    sw: Nex,  # noqa: F811
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _password(monkeypatch)
    repo = tmp_path / "repo"
    _configure(sw, repo)
    tenant = sw.tenant()
    sw.app()
    name = sw.create(tenant, "web")
    old = _converge(sw, name)
    _write(sw, name, "before\n")
    first = cli.json("instance", "backup", "create", name)
    _write(sw, name, "after\n")

    # a missing snapshot, then a damaged backup file: refused, nothing changed
    version = _service(sw, name).attrs["Version"]["Index"]
    missing = cli("instance", "backup", "restore", name, "abcdef12", "--yes")
    assert missing.exit_code == 1 and "no snapshot abcdef12" in missing.stderr
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar at all" * 100)
    import hashlib

    bad.with_name("bad.tar.sha256").write_text(
        f"{hashlib.sha256(bad.read_bytes()).hexdigest()}  bad.tar\n"
    )
    refused = cli("instance", "restore", name, str(bad), "--yes")
    assert refused.exit_code == 2, refused.stderr
    assert "not a tar archive" in refused.stderr
    assert _service(sw, name).attrs["Version"]["Index"] == version
    assert sw.get(name)["volume"] == old["volume"] and _read(sw, name) == "after\n"

    restored = cli("instance", "backup", "restore", name, first["snapshot"], "--yes")
    assert restored.exit_code == 0, restored.stderr
    view = sw.get(name)
    assert view["status"] == "running" and view["volume"] != old["volume"]
    assert view["previous_volume"] == old["volume"]
    spec = _service(sw, name).attrs["Spec"]
    (mount,) = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert mount["Source"] == view["volume"]
    assert spec["UpdateConfig"]["Order"] == "stop-first"
    assert _read(sw, name) == "before\n"
    assert get_page(view["endpoint"], "/data/file.txt") == (200, "before\n")
    # the previous volume is kept (retention.previous_volumes), the fresh one is labelled
    sw.client.volumes.get(old["volume"])
    assert "instance.restored" in [t for t, _ in sw.events()]
    # the provisioner finds nothing to change: no second rolling update
    version = _service(sw, name).attrs["Version"]["Index"]
    assert _converge(sw, name)["status"] == "running"
    assert _service(sw, name).attrs["Version"]["Index"] == version

    # past retention.previous_volumes the housekeeper removes the previous volume (with
    # the exited task containers that mount it); the service keeps running on the new one
    from datetime import timedelta

    from mno import clock
    from tests.nex.test_restore import _housekeep

    clock.set_now(clock.now() + timedelta(days=8))
    _housekeep(sw)
    assert not _has_volume(sw, old["volume"])
    assert sw.get(name)["previous_volume"] is None
    assert _read(sw, name) == "before\n"


def test_a_swarm_restore_that_does_not_become_healthy_goes_back_to_the_old_volume(
    sw: Nex,  # noqa: F811
    tmp_path: Path,
) -> None:
    import sqlalchemy as sa

    from mno.nex import backups, restores
    from mno.nex.containers import Options
    from mno.store import db
    from tests.nex.conftest import FAST

    tenant = sw.tenant()
    sw.app()
    name = sw.create(tenant, "web")
    _converge(sw, name)
    _write(sw, name, "old\n")
    exported = backups.backup(name, tmp_path / "old.tar", db_url=sw.url)
    assert exported["bytes"] > 0
    assert backups.verify(tmp_path / "old.tar", "data") == exported["sha256"]
    _write(sw, name, "current\n")
    # an app whose health depends on its data: the backup lacks the file checked
    code, _ = _task_container(sw, name).exec_run(["sh", "-c", "echo ok > /www/data/ok"])
    assert code == 0
    with db.get_engine(sw.url).begin() as conn:
        conn.execute(
            sa.text("UPDATE nex_instance SET health_path = '/data/ok' WHERE name = :n"),
            {"n": name},
        )
    sw.change("restart", name)
    before = _converge(sw, name)
    assert before["status"] == "running"
    spec = _service(sw, name).attrs["Spec"]
    assert "/data/ok" in " ".join(spec["TaskTemplate"]["ContainerSpec"]["Healthcheck"]["Test"])
    volumes = {v.name for v in sw.client.volumes.list(filters={"label": f"mno.tenant={tenant}"})}

    with pytest.raises(restores.RestoreFailed) as failed:
        backups.restore(name, tmp_path / "old.tar", db_url=sw.url, opts=Options.from_dict(FAST))

    assert "did not become healthy" in failed.value.message
    view = sw.get(name)
    assert view["volume"] == before["volume"] and view["previous_volume"] is None
    assert view["status"] == "running"
    (mount,) = _service(sw, name).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert mount["Source"] == before["volume"]
    assert _read(sw, name) == "current\n"
    assert get_page(view["endpoint"], "/data/ok") == (200, "ok\n")
    after = {v.name for v in sw.client.volumes.list(filters={"label": f"mno.tenant={tenant}"})}
    assert after == volumes  # the fresh volume is gone
    with db.get_engine(sw.url).connect() as conn:
        row = conn.execute(
            sa.text("SELECT restore_volume, lease_owner FROM nex_instance WHERE name = :n"),
            {"n": name},
        ).one()
        action = conn.execute(
            sa.text("SELECT action FROM audit_entry ORDER BY at DESC LIMIT 1")
        ).scalar_one()
    assert tuple(row) == (None, None) and action == "instance.restore_undone"


def test_a_backup_never_reads_an_empty_volume_made_in_place_of_a_missing_one(
    sw: Nex,  # noqa: F811
    cli: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _password(monkeypatch)
    _configure(sw, tmp_path / "repo")
    tenant = sw.tenant()
    sw.app()
    name = sw.create(tenant, "web")
    view = _converge(sw, name)
    sw.change("stop", name)
    assert _converge(sw, name)["status"] == "stopped"
    # the volume is lost (on a multi-node swarm: mno talks to a manager on another node)
    for c in sw.client.containers.list(all=True, filters={"volume": view["volume"]}):
        c.remove(force=True)
    sw.client.volumes.get(view["volume"]).remove(force=True)

    result = cli("instance", "backup", "create", name)
    assert result.exit_code == 1
    assert f"its volume {view['volume']} is not on node" in result.stderr
    assert not _has_volume(sw, view["volume"])
    assert [r["status"] for r in _backups(sw.url, name)] == ["failed"]


def test_a_terminated_swarm_instance_leaves_a_final_backup(sw: Nex) -> None:  # noqa: F811
    from mno.nex import backups

    tenant = sw.tenant()
    sw.app()
    name = sw.create(tenant, "web")
    view = _converge(sw, name)
    _write(sw, name, "last words\n")
    sw.change("terminate", name, backup=True)
    assert _converge(sw, view["id"])["status"] == "terminated"

    (tar,) = backups.backups_dir().glob(f"{name}-*.tar")
    assert backups.verify(tar, "data")
    assert _tar_file(tar.read_bytes(), "data/file.txt") == b"last words\n"
    assert not _has_volume(sw, view["volume"])
    assert not sw.client.services.list(filters={"label": f"mno.instance={view['id']}"})


def test_a_swarm_restore_killed_after_the_update_is_repaired_by_the_provisioner(
    sw: Nex,  # noqa: F811
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess
    import sys
    from datetime import timedelta

    import sqlalchemy as sa

    from mno import clock
    from mno.nex import backups
    from mno.store import db

    tenant = sw.tenant()
    sw.app()
    name = sw.create(tenant, "web")
    before = _converge(sw, name)
    _write(sw, name, "old\n")
    backups.backup(name, tmp_path / "old.tar", db_url=sw.url)
    _write(sw, name, "current\n")

    # killed once the service was updated to mount the fresh volume, before the swap
    env = dict(os.environ, MNO_TEST_RESTORE_PAUSE="started", MNO_DB_URL=sw.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "instance", "restore", name, str(tmp_path / "old.tar")]
        + ["--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.strip() == "restore paused at started", line + proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    spec = _service(sw, name).attrs["Spec"]
    (mount,) = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
    fresh = mount["Source"]
    assert fresh != before["volume"] and fresh.startswith(before["volume"])
    assert sw.get(name)["volume"] == before["volume"]  # the store never swapped

    with db.get_engine(sw.url).begin() as conn:  # the dead restore's lease expires
        conn.execute(
            sa.text("UPDATE nex_instance SET lease_until = :t WHERE name = :n"),
            {"t": clock.now() - timedelta(seconds=1), "n": name},
        )
    view = _converge(sw, name)
    assert view["status"] == "running" and view["volume"] == before["volume"]
    (mount,) = _service(sw, name).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert mount["Source"] == before["volume"]
    assert _read(sw, name) == "current\n"
    assert not _has_volume(sw, fresh)
    with db.get_engine(sw.url).connect() as conn:
        row = conn.execute(
            sa.text("SELECT restore_volume, lease_owner FROM nex_instance WHERE name = :n"),
            {"n": name},
        ).one()
    assert tuple(row) == (None, None)
