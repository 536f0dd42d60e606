"""Recovery from the CLI: `mno sync unlock` and the exit codes of `mno sync run`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import counts
from tests.sync.api import Api


def _lock_someone_else(world, name: str) -> None:
    from mno.store import leases
    from mno.store.db import session_scope
    from mno.sync import connections, runlock

    with session_scope(world.url) as s:
        cid = connections.get(s, name).id
        owner = "other-host:4242:abcd"
        assert leases.acquire_lock(s, runlock.lock_name(cid), owner, runlock.LOCK_TTL)


def test_unlock_releases_a_lock_held_elsewhere_with_confirmation(
    world, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.connector("crm", "crm", Api(records=2))
    name = world.connect("crm")
    _lock_someone_else(world, name)
    assert cli("sync", "run", name).exit_code == 1  # already syncing, held elsewhere

    # off a terminal, without --yes: refused (exit 2), nothing written
    before = counts(world.url)
    r = cli("sync", "unlock", name)
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert counts(world.url) == before
    # on a terminal, answering no: nothing released
    monkeypatch.setattr("mno.cli.sync._tty", lambda: True)
    r = cli("sync", "unlock", name, input="n\n")
    assert r.exit_code == 1
    assert counts(world.url) == before
    assert cli("sync", "run", name).exit_code == 1
    # answering yes: released, audited with the holder
    r = cli("sync", "unlock", name, "-o", "json", input="y\n")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout[r.stdout.index("{") :])
    assert out["released"] is True and out["holder"] == "other-host:4242:abcd"
    assert cli.json("sync", "run", name)["status"] == "success"

    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.core import AuditEntry

    with session_scope(world.url, write=False) as s:
        rows = list(s.exec(select(AuditEntry).where(AuditEntry.action == "sync.unlock")))
    assert len(rows) == 1 and rows[0].diff["before"]["holder"] == "other-host:4242:abcd"

    # --yes skips the question; a free lock is reported as such
    _lock_someone_else(world, name)
    monkeypatch.setattr("mno.cli.sync._tty", lambda: False)
    assert cli.json("sync", "unlock", name, "--yes")["released"] is True
    assert cli.json("sync", "unlock", name, "--yes")["released"] is False
