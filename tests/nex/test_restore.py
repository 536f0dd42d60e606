"""Restoring an instance's data on the real engine: verified before anything changes,
filled into a fresh volume, swapped only once healthy, safe against kill -9 at any stage,
the replaced volume kept for its retention and then removed by the housekeeper."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import counts
from tests.nex.conftest import FAST, Nex, get_page, wait_for

MNO = [sys.executable, "-m", "mno"]
BACKUP = "data from the backup\n"
CURRENT = "data written after the backup\n"


def _write(nex: Nex, name: str, text: str, file: str = "file.txt") -> None:
    (container,) = [c for c in nex.containers(name) if c.status == "running"]
    code, out = container.exec_run(["sh", "-c", f"printf '%s' '{text}' > /www/data/{file}"])
    assert code == 0, out


def _read(nex: Nex, name: str, file: str = "file.txt") -> tuple[int, str]:
    return get_page(nex.get(name)["endpoint"], f"/data/{file}")


def _sums(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")


def _running(nex: Nex, cli: Any, tmp_path: Path) -> tuple[str, Path]:
    """A running instance whose volume changed since its backup (``web.tar``)."""
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    assert nex.get(name)["status"] == "running"
    _write(nex, name, BACKUP)
    backup = tmp_path / "web.tar"
    cli.json("instance", "export", name, "--out", str(backup))
    _write(nex, name, CURRENT)
    assert _read(nex, name) == (200, CURRENT)
    return name, backup


def _volumes(nex: Nex, name: str) -> set[str]:
    iid = nex.get(name)["id"]
    return {v.name for v in nex.client.volumes.list(filters={"label": f"mno.instance={iid}"})}


def _row(nex: Nex, name: str) -> dict[str, Any]:
    from mno.store import db

    with db.get_engine(nex.url).connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT volume, previous_volume, previous_volume_until, restore_volume, "
                "lease_owner, work, container_id, deploy FROM nex_instance WHERE name = :n"
            ),
            {"n": name},
        ).one()
    return dict(row._mapping)


def _housekeep(nex: Nex) -> Any:
    from mno.agents import housekeeper
    from mno.agents.base import TickContext

    return housekeeper.tick(TickContext(agent="housekeeper", db_url=nex.url, batch_size=50))


def test_restore_fills_a_fresh_volume_and_keeps_the_previous_one(
    nex: Nex, cli: Any, tmp_path: Path, store_url: str
) -> None:
    from mno import clock

    name, backup = _running(nex, cli, tmp_path)
    before = nex.get(name) | {"deploy": _row(nex, name)["deploy"]}
    old_volume, old_container = before["volume"], before["container_id"]

    result = cli.json("instance", "restore", name, str(backup), "--yes")

    view = nex.get(name)
    assert result["status"] == view["status"] == "running"
    assert _read(nex, name) == (200, BACKUP)
    assert view["volume"] == result["volume"] == f"{old_volume}-r{before['deploy'] + 1}"
    assert view["previous_volume"] == result["previous_volume"] == old_volume
    assert view["container_id"] != old_container
    assert [c.id for c in nex.containers(name)] == [view["container_id"]]  # old one removed
    assert _volumes(nex, name) == {old_volume, view["volume"]}
    row = _row(nex, name)
    assert row["restore_volume"] is None and row["lease_owner"] is None
    assert row["work"] == "idle"
    kind, payload = nex.events()[-1]
    assert kind == "instance.restored" and payload["previous_volume"] == old_volume

    # kept for retention.previous_volumes (7 days by default), then the housekeeper
    # removes it
    assert _housekeep(nex).details["previous_volumes"] == 0
    assert old_volume in _volumes(nex, name)
    clock.set_now(clock.now() + timedelta(days=7, minutes=1))
    try:
        assert _housekeep(nex).details["previous_volumes"] == 1
    finally:
        clock.set_now(None)
    assert _volumes(nex, name) == {view["volume"]}
    assert nex.get(name)["previous_volume"] is None
    assert nex.events()[-1][0] == "instance.previous_volume_removed"
    assert _read(nex, name) == (200, BACKUP)

    # a second restore builds on the restored volume's base name and drops the first
    # restore's kept volume in favour of the one it replaces
    _write(nex, name, CURRENT)
    second = cli.json("instance", "restore", name, str(backup), "--yes")
    assert second["previous_volume"] == view["volume"]
    assert second["volume"] == f"{old_volume}-r{before['deploy'] + 2}"
    assert _volumes(nex, name) == {view["volume"], second["volume"]}
    assert _read(nex, name) == (200, BACKUP)


def test_no_keep_previous_removes_the_replaced_volume(nex: Nex, cli: Any, tmp_path: Path) -> None:
    name, backup = _running(nex, cli, tmp_path)
    old_volume = nex.get(name)["volume"]
    result = cli.json("instance", "restore", name, str(backup), "--no-keep-previous", "--yes")
    assert result["previous_volume"] is None
    assert _volumes(nex, name) == {result["volume"]}
    assert old_volume not in _volumes(nex, name)
    assert nex.get(name)["previous_volume"] is None
    assert _read(nex, name) == (200, BACKUP)


def _truncated(backup: Path, dest: Path) -> None:
    dest.write_bytes(backup.read_bytes()[: backup.stat().st_size // 2])
    _sums(dest)


def _cut_at_member(backup: Path, dest: Path) -> None:
    """Cut exactly where the last entry's header starts: the cut Python's tarfile alone
    does not notice."""
    with tarfile.open(backup) as tf:
        last = tf.getmembers()[-1].offset
    dest.write_bytes(backup.read_bytes()[:last])
    _sums(dest)


def _wrong_checksum(backup: Path, dest: Path) -> None:
    dest.write_bytes(backup.read_bytes())
    Path(f"{dest}.sha256").write_text(f"{'0' * 64}  {dest.name}\n")


def _not_a_tar(backup: Path, dest: Path) -> None:
    dest.write_bytes(os.urandom(20_000))
    _sums(dest)


def _foreign_tar(backup: Path, dest: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("etc/passwd")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"root"))
    dest.write_bytes(buf.getvalue())
    _sums(dest)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_truncated, "is truncated"),
        (_cut_at_member, "is truncated"),
        (_wrong_checksum, "does not match its checksum"),
        (_not_a_tar, "is not a tar archive"),
        (_foreign_tar, "outside data/"),
    ],
)
def test_a_bad_archive_is_refused_and_changes_nothing(
    nex: Nex, cli: Any, tmp_path: Path, damage: Any, says: str
) -> None:
    name, backup = _running(nex, cli, tmp_path)
    bad = tmp_path / "bad.tar"
    damage(backup, bad)
    before, volumes, row = counts(nex.url), _volumes(nex, name), _row(nex, name)

    result = cli("instance", "restore", name, str(bad), "--yes")

    assert result.exit_code == 2, result.stderr
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert counts(nex.url) == before and _row(nex, name) == row
    assert _volumes(nex, name) == volumes
    assert nex.get(name)["status"] == "running"
    assert _read(nex, name) == (200, CURRENT)


def test_a_restore_that_does_not_become_healthy_is_undone(
    nex: Nex, cli: Any, tmp_path: Path
) -> None:
    from mno.nex import backups, restores
    from mno.nex.containers import Options

    name, backup = _running(nex, cli, tmp_path)
    # an app whose health depends on its data: the backup lacks the file checked
    _write(nex, name, "ok", file="ok")
    from mno.store import db

    with db.get_engine(nex.url).begin() as conn:
        conn.execute(
            sa.text("UPDATE nex_instance SET health_path = '/data/ok' WHERE name = :n"),
            {"n": name},
        )
    before = nex.get(name)
    volumes = _volumes(nex, name)

    with pytest.raises(restores.RestoreFailed) as failed:
        backups.restore(name, backup, db_url=nex.url, opts=Options.from_dict(FAST))

    assert "did not become healthy" in failed.value.message
    view = nex.get(name)
    assert view["container_id"] == before["container_id"]
    assert view["volume"] == before["volume"] and view["previous_volume"] is None
    assert view["status"] == "running"
    assert _volumes(nex, name) == volumes
    assert [c.id for c in nex.containers(name)] == [before["container_id"]]
    assert _read(nex, name) == (200, CURRENT)
    row = _row(nex, name)
    assert row["restore_volume"] is None and row["lease_owner"] is None
    from mno.store import db as store_db

    with store_db.get_engine(nex.url).connect() as conn:
        action, diff = conn.execute(
            sa.text("SELECT action, diff FROM audit_entry ORDER BY at DESC LIMIT 1")
        ).one()
    assert action == "instance.restore_undone" and "health check failed" in str(diff)


def _restore_until(nex: Nex, name: str, backup: Path, stage: str) -> subprocess.Popen[bytes]:
    """``mno instance restore`` in its own process, paused at ``stage`` (test hook)."""
    env = dict(os.environ, MNO_TEST_RESTORE_PAUSE=stage, MNO_DB_URL=nex.url)
    proc = subprocess.Popen(
        [*MNO, "instance", "restore", name, str(backup), "--yes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.strip() == f"restore paused at {stage}", line + proc.stderr.read().decode()
    return proc


@pytest.mark.parametrize("stage", ["filled", "stopped", "started", "swapped"])
def test_kill_9_mid_restore_leaves_old_or_new_data_and_the_provisioner_repairs_it(
    nex: Nex, cli: Any, tmp_path: Path, store_url: str, stage: str
) -> None:
    from mno.store import db

    name, backup = _running(nex, cli, tmp_path)
    before = nex.get(name) | {"deploy": _row(nex, name)["deploy"]}
    proc = _restore_until(nex, name, backup, stage)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    swapped = stage == "swapped"
    row = _row(nex, name)
    if swapped:  # the swap committed: the store names the new volume, the lease is free
        assert row["lease_owner"] is None and row["restore_volume"] is None
    else:  # the provisioner waits while the dead restore's lease holds
        assert row["lease_owner"] and row["lease_owner"].startswith("restore:")
        assert row["restore_volume"] == f"{before['volume']}-r{before['deploy'] + 1}"
        nex.tick()
        assert _row(nex, name)["lease_owner"] == row["lease_owner"]
        # the lease expires
        with db.get_engine(nex.url).begin() as conn:
            conn.execute(
                sa.text("UPDATE nex_instance SET lease_until = :t WHERE name = :n"),
                {"t": before_now(), "n": name},
            )
    nex.tick()

    view = nex.get(name)
    assert view["status"] == "running", json.dumps(view, default=str)
    assert _read(nex, name) == (200, BACKUP if swapped else CURRENT)
    fresh = f"{before['volume']}-r{before['deploy'] + 1}"
    assert view["volume"] == (fresh if swapped else before["volume"])
    assert _row(nex, name)["restore_volume"] is None
    if not swapped:  # what the restore left is gone
        assert _volumes(nex, name) == {before["volume"]}
        assert [c.id for c in nex.containers(name)] == [before["container_id"]]
    else:  # the replaced container and volume go with the retention
        from mno import clock

        clock.set_now(clock.now() + timedelta(days=8))
        try:
            _housekeep(nex)
        finally:
            clock.set_now(None)
        assert _volumes(nex, name) == {view["volume"]}
        assert [c.id for c in nex.containers(name)] == [view["container_id"]]

    # and a restore afterwards goes through
    again = cli.json("instance", "restore", name, str(backup), "--yes")
    assert again["status"] == "running"
    wait_for(lambda: _read(nex, name) == (200, BACKUP))


def before_now() -> Any:
    from mno import clock

    return clock.now() - timedelta(seconds=1)


def test_a_large_restore_streams_in_constant_memory(nex: Nex, cli: Any, tmp_path: Path) -> None:
    """200 MB of random data: the restoring process's peak RSS grows far less than that."""
    name, _ = _running(nex, cli, tmp_path)
    size = 200 * 1024 * 1024
    big = tmp_path / "big.tar"
    digest = hashlib.sha256()
    with tarfile.open(big, mode="w") as tf:
        folder = tarfile.TarInfo("data")
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(folder)
        info = tarfile.TarInfo("data/big.bin")
        info.size, info.mode = size, 0o644

        class Random(io.RawIOBase):
            left = size

            def readable(self) -> bool:
                return True

            def readinto(self, buf: Any) -> int:
                n = min(len(buf), self.left, 1 << 20)
                chunk = os.urandom(n)
                digest.update(chunk)
                buf[:n] = chunk
                self.left -= n
                return n

        tf.addfile(info, io.BufferedReader(Random()))
    _sums(big)
    # VmHWM: the peak RSS of this process image (ru_maxrss would carry the forking
    # test process's peak over the exec)
    script = (
        "import json, re, sys\n"
        "from mno.nex import backups\n"
        "import docker, tarfile, requests\n"
        "def hwm():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1))\n"
        "base = hwm()\n"
        "out = backups.restore(sys.argv[1], sys.argv[2])\n"
        "print(json.dumps({'base_kib': base, 'peak_kib': hwm(), 'status': out['status']}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, name, str(big)],
        capture_output=True,
        env=dict(os.environ, MNO_DB_URL=nex.url),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    figures = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    growth_mib = (figures["peak_kib"] - figures["base_kib"]) / 1024
    print(
        f"restore of a {size // 2**20} MiB archive: peak RSS {figures['peak_kib'] // 1024} MiB, "
        f"growth {growth_mib:.1f} MiB over the process after imports"
    )
    assert figures["status"] == "running"
    assert growth_mib < 50
    (container,) = [c for c in nex.containers(name) if c.status == "running"]
    code, out = container.exec_run(["sha256sum", "/www/data/big.bin"])
    assert code == 0 and out.decode().split()[0] == digest.hexdigest()
