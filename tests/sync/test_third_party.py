"""The sync engine against real third-party API servers, with the example connectors of
``configs/connectors`` used as they are (the connection gives the server's base URL):

- json-server 0.17.4 (npm): page links, ``updated_at_gte``, create/update/delete pushes;
- Datasette (PyPI): read-only, ``_next`` keyset pages, ``updated_at__gte``, soft deletes
  by a ``deleted`` column, edits written to its SQLite file between passes.

Each test runs on SQLite and on PostgreSQL (the ``world`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mno import clock
from mno.sync import mapping
from tests.sync.api import Api
from tests.sync.servers import ROOT, Datasette, JsonServer, json_server_bin

CONNECTORS = ROOT / "configs" / "connectors"
SEED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def seed(n: int, ms: bool) -> list[dict[str, Any]]:
    """``n`` contacts stamped a second apart in the past (json-server keeps JavaScript's
    milliseconds, the SQLite file the microseconds mno writes)."""
    out = []
    for i in range(1, n + 1):
        at = (SEED_AT + timedelta(seconds=i)).isoformat(timespec="milliseconds" if ms else "auto")
        out.append(
            {
                "id": i,
                "name": f"name {i}",
                "email": f"User{i}@Example.TEST",
                "phone": f"+33 1 00 00 {i:04d}",
                "updated_at": at.replace("+00:00", ".000000Z" if not ms else "Z"),
            }
        )
    return out


def changes(run: Any) -> dict[str, int]:
    """What a run changed in the store (pulled creates, updates and deletes)."""
    return {k: run.counts.get(k, 0) for k in ("created", "updated", "deleted")}


NOTHING = {"created": 0, "updated": 0, "deleted": 0}


def change_rows(url: str) -> int:
    import sqlalchemy as sa

    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM sync_change")).scalar_one())


def by_email(world: Any) -> dict[str, dict[str, Any]]:
    return {r.data["email"]: r.data for r in world.records()}


def add_connector(world: Any, file: str, app: str) -> None:
    from mno.store.db import session_scope
    from mno.sync import spec
    from mno.tenancy import apps

    with session_scope(world.url) as s:
        apps.create(s, app, code=app, stack="connector", owner="acme")
        spec.apply(s, spec.load_file(CONNECTORS / file), file)


@pytest.fixture
def json_server_binary() -> Path:
    found = json_server_bin()
    if isinstance(found, str):
        pytest.skip(f"json-server {found}")
    return found


@pytest.fixture
def json_server(json_server_binary: Path, tmp_path: Path) -> Iterator[JsonServer]:
    server = JsonServer(json_server_binary, tmp_path / "json-server", seed(250, ms=True))
    yield server
    server.stop()


@pytest.fixture
def datasette(tmp_path: Path) -> Iterator[Datasette]:
    server = Datasette(tmp_path / "datasette", seed(1200, ms=False))
    yield server
    server.stop()


# -- json-server ------------------------------------------------------------------------


def test_json_server_pull_incremental_and_deletes(world, json_server: JsonServer) -> None:
    add_connector(world, "json-server.yaml", "json-server")
    name = world.connect("json-server", push=False, base_url=json_server.url)

    run = world.run(name)
    assert run.status == "success", run.error
    assert changes(run) == {"created": 250, "updated": 0, "deleted": 0}
    assert run.counts["requests"] == 3  # 100 per page, following the Link header
    rows = by_email(world)
    assert rows["user7@example.test"] == {
        "name": "name 7",
        "email": "user7@example.test",
        "phone": "+33 1 00 00 0007",
    }

    # edits through json-server's API; its middleware stamps updated_at
    json_server.edit(7, name="seven")
    json_server.edit(200, phone="+33 9 99 99 9999")
    new = json_server.create(name="new one", email="New@Example.TEST", phone=None)
    run = world.run(name)
    assert run.status == "success", run.error
    assert changes(run) == {"created": 1, "updated": 2, "deleted": 0}
    # only what changed since the cursor (and the newest seed, at the cursor) is read
    assert run.counts["fetched"] == 4 and run.counts["requests"] == 1
    rows = by_email(world)
    assert rows["user7@example.test"]["name"] == "seven"
    assert rows["user200@example.test"]["phone"] == "+33 9 99 99 9999"
    assert rows["new@example.test"]["name"] == "new one"

    # re-running changes nothing: the lookback re-reads the edits, which hash the same
    before = change_rows(world.url)
    again = world.run(name)
    assert changes(again) == NOTHING and again.counts["unchanged"] >= 3
    assert change_rows(world.url) == before

    # json-server deletes outright: an incremental pass cannot see it, a full pass can
    json_server.delete(3)
    json_server.delete(new["id"])
    assert changes(world.run(name)) == NOTHING
    run = world.run(name, full=True)
    assert run.status == "success", run.error
    assert changes(run) == {"created": 0, "updated": 0, "deleted": 2}
    rows = by_email(world)
    assert len(rows) == 249 and "user3@example.test" not in rows
    assert "new@example.test" not in rows
    assert changes(world.run(name, full=True)) == NOTHING
    assert changes(world.run(name)) == NOTHING


def test_json_server_receives_platform_changes(world, json_server: JsonServer) -> None:
    """Records created, changed and deleted on the platform side (here by a second
    app's connection) reach json-server; what comes back is recognised as the echo."""
    for rid in list(json_server.all()):
        json_server.delete(rid)
    add_connector(world, "json-server.yaml", "json-server")
    source = Api(records=3)
    world.connector("crm", "crm", source)
    crm = world.connect("crm")
    js = world.connect("json-server", base_url=json_server.url)

    # the crm run creates 3 records and, propagating, runs json-server's connection
    assert changes(world.run(crm)) == {"created": 3, "updated": 0, "deleted": 0}
    there = {row["email"]: row for row in json_server.all().values()}
    assert set(there) == {"u1@x.test", "u2@x.test", "u3@x.test"}
    assert all(row["updated_at"] for row in there.values())  # stamped by json-server

    before = change_rows(world.url)
    echo = world.run(js)  # pulls the three records it wrote: echoes, not changes
    assert echo.status == "success", echo.error
    assert changes(echo) == NOTHING and echo.counts.get("pushed", 0) == 0
    assert change_rows(world.url) == before

    source.edit("c1", name="renamed")
    assert changes(world.run(crm)) == {"created": 0, "updated": 1, "deleted": 0}
    there = {row["email"]: row for row in json_server.all().values()}
    assert there["u1@x.test"]["name"] == "renamed"
    assert changes(world.run(js)) == NOTHING

    source.delete("c2")
    assert changes(world.run(crm)) == {"created": 0, "updated": 0, "deleted": 1}
    assert {row["email"] for row in json_server.all().values()} == {"u1@x.test", "u3@x.test"}

    # and the other way: a change made in json-server reaches the crm app
    twin = next(r for r in json_server.all().values() if r["email"] == "u3@x.test")
    json_server.edit(twin["id"], name="from json-server")
    assert changes(world.run(js)) == {"created": 0, "updated": 1, "deleted": 0}
    assert source.rows["c3"]["name"] == "from json-server"

    # nothing left to do: neither side changes again
    before = change_rows(world.url)
    for _ in range(2):
        for name in (js, crm):
            run = world.run(name)
            assert run.status == "success", run.error
            assert changes(run) == NOTHING and run.counts.get("pushed", 0) == 0
    assert run.counts.get("push_failed", 0) == 0
    assert change_rows(world.url) == before
    assert world.run(js, full=True).counts.get("deleted", 0) == 0


# -- Datasette --------------------------------------------------------------------------


def test_datasette_pull_incremental_and_deletes(world, datasette: Datasette) -> None:
    add_connector(world, "datasette.yaml", "datasette")
    name = world.connect("datasette", push=False, base_url=datasette.url)

    run = world.run(name)
    assert run.status == "success", run.error
    assert changes(run) == {"created": 1200, "updated": 0, "deleted": 0}
    assert run.counts["requests"] == 3  # 500 per page, by the _next token
    assert by_email(world)["user1200@example.test"]["phone"] == "+33 1 00 00 1200"

    # datasette is read-only: the edits go into its SQLite file
    now = mapping.format_time(clock.now(), "iso8601")
    datasette.execute("UPDATE contacts SET name = 'seven', updated_at = ? WHERE id = 7", now)
    datasette.execute("UPDATE contacts SET deleted = 1, updated_at = ? WHERE id = 8", now)
    datasette.execute(
        "INSERT INTO contacts (id, name, email, updated_at) VALUES (5000, 'new', 'n@x.test', ?)",
        now,
    )
    run = world.run(name)
    assert run.status == "success", run.error
    assert changes(run) == {"created": 1, "updated": 1, "deleted": 1}
    assert run.counts["fetched"] == 4 and run.counts["requests"] == 1
    rows = by_email(world)
    assert rows["user7@example.test"]["name"] == "seven"
    assert "user8@example.test" not in rows
    assert rows["n@x.test"] == {"name": "new", "email": "n@x.test", "phone": None}

    before = change_rows(world.url)
    again = world.run(name)  # the lookback re-reads the three, unchanged
    assert changes(again) == NOTHING and again.counts["unchanged"] >= 2
    assert change_rows(world.url) == before

    # rows deleted outright are found by a full pass only
    datasette.execute("DELETE FROM contacts WHERE id IN (1, 1199)")
    assert changes(world.run(name)) == NOTHING
    run = world.run(name, full=True)
    assert run.status == "success", run.error
    assert changes(run) == {"created": 0, "updated": 0, "deleted": 2}
    assert len(world.records()) == 1200 - 1 + 1 - 2
    assert changes(world.run(name, full=True)) == NOTHING
    assert changes(world.run(name)) == NOTHING
    assert change_rows(world.url) == before + 2
