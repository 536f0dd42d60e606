"""``mno db backup`` / ``mno db restore`` on SQLite and PostgreSQL, taken while another
process writes, restored into a fresh home; refusals of newer, damaged and foreign files;
``mno doctor``'s backup age check."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock
from mno.store import db
from mno.tenancy import tenants
from tests.conftest import PG_SERVER_URL

# A writer like the dispatcher: each transaction appends one event and its audit row.
WRITER = """
import sys, time, pathlib
from mno.store import audit, outbox
from mno.store.db import session_scope
url, stop, ready = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
n = 0
while not stop.exists():
    with session_scope(url) as s:
        outbox.emit(s, "tenant.updated", {"n": n})
        audit.record(s, "writer.tick", target_type="writer", target_id=n, target="writer")
    n += 1
    if n == 20:
        ready.touch()
print(n)
"""


def _counts(url: str) -> dict[str, int]:
    with db.get_engine(url).connect() as conn:
        return {
            "invoices": conn.execute(sa.text("SELECT count(*) FROM billing_invoice")).scalar_one(),
            "events": conn.execute(
                sa.text("SELECT count(*) FROM outbox_event WHERE type = 'tenant.updated'")
            ).scalar_one(),
            "ticks": conn.execute(
                sa.text("SELECT count(*) FROM audit_entry WHERE action = 'writer.tick'")
            ).scalar_one(),
        }


def _invoice_numbers(cli: Any) -> list[str]:
    return sorted(i["number"] for i in cli.json("invoice", "list", "--limit", "1000"))


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    from sqlalchemy.engine import make_url

    name = f"mno_restore_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        db.dispose_all()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_backup_while_writing_restores_everything_into_a_fresh_home(
    store_url: str, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: Any
) -> None:
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    with db.session_scope(store_url) as s:
        tenants.create(s, "acme", country="FR", currency="EUR")
    for n in range(3):
        made = cli("invoice", "create", "acme", "--line", f"Work {n}:1:10.00", "--issue")
        assert made.exit_code == 0, made.stderr
    numbers = _invoice_numbers(cli)
    assert len(numbers) == 3

    stop, ready = tmp_path / "stop", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, store_url, str(stop), str(ready)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "writer did not start"
            time.sleep(0.05)
        out = tmp_path / ("backup.db" if store_url.startswith("sqlite") else "backup.dump")
        result = cli("db", "backup", "--out", out, "-o", "json")
        assert result.exit_code == 0, result.stderr
        taken = json.loads(result.stdout)
        time.sleep(0.2)  # the writer goes on after the backup
    finally:
        stop.touch()
        written = int(writer.communicate(timeout=60)[0])
    assert taken["format"] == ("sqlite" if store_url.startswith("sqlite") else "pg_dump")
    assert taken["bytes"] == out.stat().st_size > 0
    assert taken["taken_at"].endswith("Z")
    live = _counts(store_url)
    assert live["events"] == written

    # a fresh home with its own empty store
    home = tmp_path / "other-home"
    home.mkdir()
    monkeypatch.setenv("MNO_HOME", str(home))
    if store_url.startswith("sqlite"):
        target = f"sqlite:///{home / 'mno.db'}"
    else:
        target = request.getfixturevalue("fresh_pg")
    monkeypatch.setenv("MNO_DB_URL", target)
    refused = cli("db", "restore", out)  # off a terminal without --yes
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    restored = cli("db", "restore", out, "--yes", "-o", "json")
    assert restored.exit_code == 0, restored.stderr

    got = _counts(target)
    assert got["invoices"] == 3
    assert _invoice_numbers(cli) == numbers
    # one consistent moment: every writer transaction is in whole or not at all,
    # taken while the writer ran (some before, some after)
    assert got["events"] == got["ticks"]
    assert 20 <= got["events"] < written
    with db.get_engine(target).connect() as conn:
        ns = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT payload FROM outbox_event WHERE type = 'tenant.updated'")
            )
        ]
        restored_rows = conn.execute(
            sa.text("SELECT count(*) FROM audit_entry WHERE action = 'store.restored'")
        ).scalar_one()
    ns = sorted((p if isinstance(p, dict) else json.loads(p))["n"] for p in ns)
    assert ns == list(range(len(ns)))  # a prefix of what was written, no gap
    assert restored_rows == 1


def test_restore_refuses_newer_damaged_and_foreign_files(
    sqlite_url: str, cli: Any, tmp_path: Path
) -> None:
    with db.session_scope(sqlite_url) as s:
        tenants.create(s, "acme")
    good = tmp_path / "good.db"
    assert cli("db", "backup", "--out", good).exit_code == 0

    newer = tmp_path / "newer.db"
    newer.write_bytes(good.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO alembic_version VALUES ('9999_future')")
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a backup\n")
    pg_like = tmp_path / "dump"
    pg_like.write_bytes(b"PGDMP\x01\x0e\x00" + b"\x00" * 64)

    with db.session_scope(sqlite_url) as s:
        tenants.create(s, "later")  # must survive every refused restore
    for path, words in [
        (newer, "newer mno"),
        (damaged, str(damaged)),
        (foreign, "neither"),
        (pg_like, "PostgreSQL dump"),
        (tmp_path / "missing.db", "no file"),
    ]:
        result = cli("db", "restore", path, "--yes")
        assert result.exit_code == 2, (path, result.stdout, result.stderr)
        assert words in result.stderr and "Traceback" not in result.stderr

    def keys() -> list[str]:
        return sorted(t["key"] for t in cli.json("tenant", "list") if t["key"] != "system")

    assert keys() == ["acme", "later"]

    # the good one restores, and the replaced store is kept beside it
    done = cli.json("db", "restore", good, "--yes")
    assert Path(done["kept"]).exists()
    assert keys() == ["acme"]
    with sqlite3.connect(done["kept"]) as conn:
        kept = sorted(r[0] for r in conn.execute("SELECT key FROM tenant WHERE key != 'system'"))
    assert kept == ["acme", "later"]


def test_doctor_warns_when_the_last_backup_is_old(
    sqlite_url: str, cli: Any, tmp_path: Path
) -> None:
    def backup_check() -> dict[str, str]:
        result = cli("doctor", "--skip-hosts", "-o", "json")
        return {c["name"]: c for c in json.loads(result.stdout)}["backup"]

    with db.session_scope(sqlite_url) as s:
        tenants.create(s, "acme")
    check = backup_check()
    assert check["status"] == "warn" and "never" in check["detail"]
    assert "mno db backup" in check["hint"]
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    clock.set_now(start)
    assert cli("db", "backup", "--out", tmp_path / "b.db").exit_code == 0
    clock.set_now(start + timedelta(hours=5))
    assert backup_check()["status"] == "ok"
    clock.set_now(start + timedelta(days=2))
    check = backup_check()
    assert check["status"] == "warn" and "48 h old" in check["detail"]
