"""Recovery from the CLI: `mno sync unlock` and the exit codes of `mno sync run`."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import counts
from tests.sync.api import Api, connector_yaml


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
    monkeypatch.setattr("mno.cli.params.stdin_is_tty", lambda: True)
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
    monkeypatch.setattr("mno.cli.params.stdin_is_tty", lambda: False)
    assert cli.json("sync", "unlock", name, "--yes")["released"] is True
    assert cli.json("sync", "unlock", name, "--yes")["released"] is False


def _apply(cli, tmp_path, base_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "crm.yaml"
    path.write_text(connector_yaml("crm", "crm", base_url))
    monkeypatch.setenv("MNO_SECRET_CRM_TOKEN", "t0ken")
    assert cli("connector", "apply", "-f", str(path)).exit_code == 0
    return cli.json("connection", "add", "acme", "crm", "--entities", "contact")["name"]


def test_unreachable_api_exits_3_and_records_the_failed_run(
    world, cli, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mno.sync.rest.backoff_seconds", lambda attempt: 0.0)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    name = _apply(cli, tmp_path, f"http://127.0.0.1:{port}", monkeypatch)
    r = cli("sync", "run", name)
    assert r.exit_code == 3, (r.stdout, r.stderr)
    assert f"127.0.0.1:{port}/page/contacts failed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    runs = cli.json("sync", "runs", "--connection", name)
    assert runs[0]["status"] == "error"


def test_refused_credentials_exit_1_with_status_and_auth_hint(
    world, cli, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api(records=3)
    api.refuse = 401
    server = world.serve(api)
    name = _apply(cli, tmp_path, server.url, monkeypatch)
    r = cli("sync", "run", name)
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "answered 401" in r.stderr and "mno secret set CRM_TOKEN" in r.stderr
    assert api.requests == 1  # no retries, and the run stops at the first entity
    api.refuse = 403
    r = cli("sync", "run", name)
    assert r.exit_code == 1 and "answered 403" in r.stderr


def test_auth_hint_is_the_connectors_own_when_given() -> None:
    from mno.sync.rest import auth_hint
    from mno.sync.spec import Auth

    own = Auth(type="bearer", token="secret:X", hint="create a key under Settings > API")
    assert auth_hint(own) == "create a key under Settings > API"
    # a connection's credentials override the connector's secret
    assert "secret Y " in auth_hint(Auth(type="bearer", token="secret:X"), {"token": "secret:Y"})
