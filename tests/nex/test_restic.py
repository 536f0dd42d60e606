"""Scheduled, encrypted backups with restic on the real engine: a local repository and an
off-host one over SFTP to a real sshd on loopback.

Each test's repository password is random; the store, the command output and the logs
are searched for it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.nex.conftest import Nex, get_page

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")


def _password(monkeypatch: pytest.MonkeyPatch) -> str:
    value = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv("MNO_SECRET_RESTIC_PASSWORD", value)
    return value


def _configure(nex: Nex, repository: str, **extra: Any) -> None:
    lines = [
        "apps_domain: apps.test",
        "backups:",
        f"  repository: {json.dumps(repository)}",
        "  password: secret:RESTIC_PASSWORD",
    ]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in extra.items()]
    nex.configure("\n".join(lines) + "\n")


def _write(nex: Nex, name: str, text: str) -> None:
    (container,) = [c for c in nex.containers(name) if c.status == "running"]
    code, _ = container.exec_run(["sh", "-c", f"printf '{text}' > /www/data/file.txt"])
    assert code == 0


def _page(nex: Nex, name: str) -> tuple[int, str]:
    return get_page(nex.get(name)["endpoint"], "/data/file.txt")


def _store_text(url: str) -> str:
    """Every row of every table, as text."""
    from sqlmodel import SQLModel

    from mno.store import db
    from mno.store.models import load_all

    load_all()
    parts = []
    with db.get_engine(url).connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            parts += [repr(tuple(row)) for row in conn.execute(sa.select(table))]
    return "\n".join(parts)


def _backups(url: str, name: str | None = None) -> list[dict[str, Any]]:
    from mno.store import db

    query = (
        "SELECT i.name, b.status, b.trigger, b.snapshot_id, b.bytes, b.error, b.owner "
        "FROM nex_backup b JOIN nex_instance i ON i.id = b.instance_id ORDER BY b.started_at"
    )
    with db.get_engine(url).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(query))]
    return [r for r in rows if name is None or r["name"] == name]


def _snapshot_count(repo: Path, password: str, iid: str) -> int:
    out = subprocess.run(
        ["restic", "--repo", str(repo), "--no-cache", "snapshots", "--json"]
        + ["--tag", f"mno,instance={iid}"],
        env={**os.environ, "RESTIC_PASSWORD": password},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len(json.loads(out))


def _backup_tick(nex: Nex, owner: str | None = None) -> Any:
    from mno.agents import backup
    from mno.agents.base import TickContext

    ctx = TickContext(agent="backup", db_url=nex.url, batch_size=20, concurrency=1)
    if owner:
        ctx.owner = owner
    return backup.tick(ctx)


# -- a local repository ----------------------------------------------------------------


def test_create_list_restore_round_trip_keeps_the_data_and_never_shows_the_password(
    nex: Nex,
    cli: Any,
    store_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = _password(monkeypatch)
    repo = tmp_path / "repo"
    _configure(nex, str(repo))
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    outputs: list[str] = []

    _write(nex, name, "version one\n")
    first = cli("instance", "backup", "create", name, "-o", "json")
    assert first.exit_code == 0, first.stderr
    outputs += [first.stdout, first.stderr]
    first_snap = json.loads(first.stdout)
    assert first_snap["instance"] == name and first_snap["bytes"] > 0
    assert (repo / "config").is_file()  # restic created the repository on first use

    _write(nex, name, "version two\n")
    second = cli.json("instance", "backup", "create", name)
    assert second["snapshot"] != first_snap["snapshot"]

    listed = cli("instance", "backup", "list", name, "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    outputs += [listed.stdout, listed.stderr]
    snaps = json.loads(listed.stdout)
    assert [s["id"] for s in snaps] == [first_snap["snapshot"], second["snapshot"]]
    assert all(s["bytes"] == r["bytes"] for s, r in zip(snaps, (first_snap, second), strict=True))
    assert all(s["time"].endswith("Z") and s["host"] == "mno" for s in snaps)
    table = cli("instance", "backup", "list", name)
    assert table.exit_code == 0 and first_snap["snapshot"] in table.stdout
    outputs += [table.stdout, table.stderr]

    # the data changes again; the first snapshot brings version one back
    _write(nex, name, "version three\n")
    restored = cli("instance", "backup", "restore", name, first_snap["snapshot"][:6], "--yes")
    assert restored.exit_code == 0, restored.stderr
    outputs += [restored.stdout, restored.stderr]
    assert _page(nex, name) == (200, "version one\n")
    assert nex.get(name)["status"] == "running"

    # an unknown snapshot is refused and changes nothing
    missing = cli("instance", "backup", "restore", name, "abcdef12", "--yes")
    assert missing.exit_code == 1 and "no snapshot abcdef12" in missing.stderr
    assert _page(nex, name) == (200, "version one\n")

    types = [t for t, _ in nex.events()]
    assert types.count("instance.backed_up") == 2 and "instance.restored" in types
    rows = _backups(nex.url, name)
    assert [(r["status"], r["trigger"]) for r in rows] == [("succeeded", "manual")] * 2
    assert rows[0]["snapshot_id"] == first_snap["snapshot"]

    # the password reached restic only
    assert password not in _store_text(nex.url)
    assert all(password not in text for text in outputs)
    assert password not in caplog.text
    assert password not in (repo / "config").read_text(errors="replace")


def test_a_failed_backup_is_recorded_without_the_password(
    nex: Nex, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    right = _password(monkeypatch)
    repo = tmp_path / "repo"
    _configure(nex, str(repo))
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    assert cli("instance", "backup", "create", name).exit_code == 0

    # a process killed mid-backup left its row running; the next backup closes it
    from mno import clock
    from mno.store.db import session_scope
    from mno.store.models.nex import InstanceBackup

    with session_scope(nex.url) as s:
        s.add(
            InstanceBackup(
                instance_id=uuid.UUID(nex.get(name)["id"]),
                repository=str(repo),
                owner="host:1:dead",
                started_at=clock.now(),
            )
        )
    wrong = f"wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv("MNO_SECRET_RESTIC_PASSWORD", wrong)
    failed = cli("instance", "backup", "create", name)
    assert failed.exit_code == 3, (failed.stderr, _backups(nex.url))
    assert failed.stderr.startswith("Error: restic") and "wrong password" in failed.stderr
    rows = _backups(nex.url, name)
    assert [r["status"] for r in rows] == ["succeeded", "failed", "failed"]
    assert rows[1]["error"].startswith("interrupted")
    assert "wrong password" in rows[-1]["error"]
    kind, payload = nex.events()[-1]
    assert kind == "instance.backup_failed" and payload["name"] == name
    text = _store_text(nex.url) + failed.stdout + failed.stderr
    assert right not in text and wrong not in text


def test_plain_text_password_and_missing_repository_are_refused(nex: Nex, cli: Any) -> None:
    from mno import platform
    from mno.errors import BadInput

    with pytest.raises(BadInput, match="backups.password: .*secret reference"):
        platform.parse("backups: {repository: /srv/r, password: hunter2}")
    with pytest.raises(BadInput, match="needs password"):
        platform.parse("backups: {repository: /srv/r}")
    with pytest.raises(BadInput, match="unsupported repository ftp"):
        platform.parse("backups: {repository: 'ftp://x/y', password: 'secret:P'}")
    tier = platform.parse("tiers: {silo: {mode: docker, backup: {every: 6h}}}")
    assert tier.tiers["silo"].backup is not None and tier.tiers["silo"].backup.every == "6h"

    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    result = cli("instance", "backup", "create", name)
    assert result.exit_code == 2 and "no backup repository is configured" in result.stderr


def test_scheduled_backups_follow_the_app_and_tier_schedule_and_retention_prunes(
    nex: Nex, cli: Any, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mno import clock

    password = _password(monkeypatch)
    repo = tmp_path / "repo"
    start = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    clock.set_now(start)
    _configure(nex, str(repo), keep_daily=2, grace="1h")
    text = nex.config_path.read_text()
    nex.configure(text + "tiers:\n  silo:\n    mode: docker\n    backup: {every: 1d}\n")
    pooled, silo = nex.tenant(), nex.tenant(tier="silo")
    nex.app("web", backup_every="6h")
    nex.app("site")  # no schedule of its own: the tier's, or none
    every6h = nex.create(pooled, "web")
    daily = nex.create(silo, "site")
    unscheduled = nex.create(pooled, "site")
    nex.tick()
    assert all(nex.get(n)["status"] == "running" for n in (every6h, daily, unscheduled))
    ids = {n: nex.get(n)["id"] for n in (every6h, daily, unscheduled)}

    def tick_at(hours: float) -> Any:
        clock.set_now(start + timedelta(hours=hours))
        return _backup_tick(nex)

    first = tick_at(0)
    assert (first.done, first.failed) == (2, 0)
    assert tick_at(0).done == 0  # nothing is due twice
    assert tick_at(5.9).done == 0
    assert tick_at(6).done == 1  # the 6h app again; the tier's daily one waits
    for hours in (12, 18):
        assert tick_at(hours).done == 1
    assert tick_at(24).done == 2  # next day: both
    assert tick_at(30).done == 1
    assert tick_at(48).done == 2  # a third day

    runs = _backups(nex.url)
    assert [r["status"] for r in runs if r["name"] == every6h] == ["succeeded"] * 7
    assert [r["status"] for r in runs if r["name"] == daily] == ["succeeded"] * 3
    assert not _backups(nex.url, unscheduled)
    # keep_daily: 2 keeps the last snapshot of each of the last two days
    assert _snapshot_count(repo, password, ids[every6h]) == 2
    assert _snapshot_count(repo, password, ids[daily]) == 2
    listed = cli.json("instance", "backup", "list", every6h)
    assert [s["time"] for s in listed] == ["2026-03-03T06:30:00Z", "2026-03-04T00:30:00Z"]

    # the report: last success per instance; nothing overdue within schedule + grace
    clock.set_now(start + timedelta(hours=48 + 6.5))
    report = cli.json("report", "backups")
    rows = {r["instance"]: r for r in report["tables"]["last_backup"]}
    assert rows[every6h]["last_success"] == "2026-03-04T00:30:00Z"
    assert rows[every6h]["every"] == "6h" and rows[daily]["every"] == "1d"
    assert rows[unscheduled]["every"] is None and rows[unscheduled]["last_success"] is None
    assert report["metrics"] == {"instances": 3, "scheduled": 2, "backed_up": 2, "overdue": 0}
    # past 6h + 1h grace with no backup: overdue; the daily one is not yet
    clock.set_now(start + timedelta(hours=48 + 7, minutes=1))
    report = cli.json("report", "backups")
    assert [r["instance"] for r in report["tables"]["overdue"]] == [every6h]
    table = cli("report", "backups")
    assert table.exit_code == 0 and "overdue" in table.stdout and every6h in table.stdout
    assert password not in _store_text(nex.url) + table.stdout


def test_two_owners_run_each_due_backup_once(
    nex: Nex, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = _password(monkeypatch)
    repo = tmp_path / "repo"
    _configure(nex, str(repo), every="6h")
    tenant = nex.tenant()
    nex.app()
    names = [nex.create(tenant, "web", name=f"web-{tenant}-{i}") for i in range(3)]
    nex.tick()
    results: dict[str, Any] = {}
    barrier = threading.Barrier(2)

    def run(owner: str) -> None:
        barrier.wait()
        results[owner] = _backup_tick(nex, owner=f"{owner}:{os.getpid()}:x")

    threads = [threading.Thread(target=run, args=(o,)) for o in ("host-a", "host-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.done for r in results.values()) == 3
    assert sum(r.failed for r in results.values()) == 0
    runs = _backups(nex.url)
    assert sorted(r["name"] for r in runs) == sorted(names)
    assert {r["status"] for r in runs} == {"succeeded"}
    for name in names:
        assert _snapshot_count(repo, password, nex.get(name)["id"]) == 1
    # a later pass finds nothing due
    assert _backup_tick(nex).done == 0


# -- off-host: SFTP to a real sshd on loopback --------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """sshd on 127.0.0.1 for the current user, with a host key and a client key in tmp."""
    binary = Path("/usr/sbin/sshd")
    if not binary.exists():
        pytest.fail("no /usr/sbin/sshd (scripts/test installs openssh-server)")
    base = tmp_path / "ssh"
    base.mkdir(mode=0o700)
    host_key, client_key = base / "host_ed25519", base / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = base / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    config = base / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\nPidFile {base}/sshd.pid\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # the privilege separation directory
    proc = subprocess.Popen(
        [str(binary), "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(base / "sshd.log", "wb"),  # noqa: SIM115 - closed with the process
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("sshd did not start: " + (base / "sshd.log").read_text())
            time.sleep(0.05)
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout
    command = (
        f"ssh -i {client_key} -p {port} -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile={base}/known_hosts -o BatchMode=yes "
        f"{user.strip()}@127.0.0.1 -s sftp"
    )
    try:
        yield {"port": port, "user": user.strip(), "command": command, "log": base / "sshd.log"}
    finally:
        proc.kill()
        proc.wait()


def test_off_host_over_sftp_to_a_loopback_sshd(
    nex: Nex,
    cli: Any,
    sshd: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = _password(monkeypatch)
    remote = tmp_path / "remote" / "mno-repo"
    remote.parent.mkdir()
    repository = f"sftp:{sshd['user']}@127.0.0.1:{remote}"
    _configure(nex, repository, sftp_command=sshd["command"], every="1h", keep_last=2)
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()

    _write(nex, name, "remote copy one\n")
    scheduled = _backup_tick(nex)
    assert (scheduled.done, scheduled.failed) == (1, 0), _backups(nex.url)
    # the repository lives where sshd wrote it, encrypted (the text is not in it)
    assert (remote / "config").is_file()
    packs = [p for p in (remote / "data").rglob("*") if p.is_file()]
    assert packs and all(b"remote copy one" not in p.read_bytes() for p in packs)
    assert "Accepted publickey" in sshd["log"].read_text()

    _write(nex, name, "remote copy two\n")
    manual = cli.json("instance", "backup", "create", name)
    _write(nex, name, "remote copy three\n")
    cli.json("instance", "backup", "create", name)
    listed = cli.json("instance", "backup", "list", name)
    assert len(listed) == 3 and listed[1]["id"] == manual["snapshot"]
    # retention runs after scheduled backups: keep_last 2
    from mno import clock

    _write(nex, name, "remote copy four\n")
    clock.set_now(datetime.now(UTC) + timedelta(hours=2))
    assert _backup_tick(nex).done == 1
    listed = cli.json("instance", "backup", "list", name)
    assert len(listed) == 2

    restored = cli("instance", "backup", "restore", name, listed[0]["id"], "--yes", "-o", "json")
    assert restored.exit_code == 0, restored.stderr
    assert _page(nex, name) == (200, "remote copy three\n")
    text = _store_text(nex.url) + restored.stdout + restored.stderr + caplog.text
    assert repository in _store_text(nex.url) and password not in text


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_apps_backup_schedule_from_the_cli_and_a_document(
    cli: Any, store_url: str, tmp_path: Path
) -> None:
    created = cli.json(
        "app", "create", "Blog", "--code", "blog", "--stack", "nex", "--image", "x:1",
        "--port", "80", "--volume-path", "/data", "--backup-every", "6h",
    )  # fmt: skip
    assert created["backup_every"] == "6h"
    bad = cli("app", "update", "blog", "--backup-every", "often")
    assert bad.exit_code == 2 and "invalid backup interval 'often'" in bad.stderr
    assert cli.json("app", "update", "blog", "--backup-every", "")["backup_every"] is None

    doc = tmp_path / "apps.yaml"
    doc.write_text(
        "kind: App\nmetadata: {name: blog}\nspec:\n  name: Blog\n  stack: nex\n"
        "  image: x:1\n  port: 80\n  volume_path: /data\n  backup: {every: 1d}\n"
    )
    applied = cli("apply", "-f", doc)
    assert applied.exit_code == 0, applied.stderr
    assert cli.json("app", "show", "blog")["backup_every"] == "1d"
    assert cli("diff", "-f", doc).exit_code == 0  # no change left
    doc.write_text(doc.read_text().replace("{every: 1d}", "{every: soon}"))
    refused = cli("diff", "-f", doc)
    assert refused.exit_code == 2 and "spec.backup.every" in refused.stderr
    doc.write_text(doc.read_text().replace("  backup: {every: soon}\n", "  backup: null\n"))
    assert cli("apply", "-f", doc).exit_code == 0
    assert cli.json("app", "show", "blog")["backup_every"] is None


def test_a_stream_that_fails_midway_leaves_no_snapshot(tmp_path: Path) -> None:
    from mno.nex import restic

    repo = restic.Repository(url=str(tmp_path / "repo"), password=f"pw-{uuid.uuid4().hex}")
    assert repo.init() and not repo.init()

    def broken() -> Iterator[bytes]:
        yield b"x" * 100_000
        raise OSError("the engine went away")

    with pytest.raises(OSError, match="went away"):
        repo.backup(broken(), "a.tar", ["mno", "instance=a"], datetime.now(UTC))
    assert repo.snapshots(["mno"]) == []
    ok = repo.backup(iter([b"whole\n"]), "a.tar", ["mno", "instance=a"], datetime.now(UTC))
    assert [s.short_id for s in repo.snapshots(["instance=a"])] == [ok.snapshot_id]
    out = tmp_path / "a.tar"
    repo.dump(ok.snapshot_id, "a.tar", out)
    assert out.read_bytes() == b"whole\n"
