"""`mno sync state show|reset` and `mno sync conflicts list|resolve`."""

from __future__ import annotations

import pytest

from tests.conftest import counts
from tests.sync.api import Api


def test_state_show_and_reset_pull_everything_again_without_duplicates(world, cli) -> None:
    api = Api(records=3)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    [fresh] = cli.json("sync", "state", "show", name)
    assert fresh["cursor"] is None and fresh["records_seen"] == 0
    world.run(name)
    [row] = cli.json("sync", "state", "show", name, "--stream", "contact")
    assert row["stream"] == "contact" and row["lookback"] == "5m"
    assert row["cursor"] == "2026-01-01T00:00:00.003000Z"  # the newest change seen
    assert row["last_pass_started_at"].endswith("Z") and row["records_seen"] == 3
    assert row["unfinished"] is False
    table = cli("sync", "state", "show", name)
    assert table.exit_code == 0 and "2026-01-01 00:00:00" in table.stdout  # to the second
    # an incremental run reads from the cursor on: only the newest record
    incremental = world.run(name).counts
    assert (incremental["fetched"], incremental["unchanged"]) == (1, 1)

    bad = cli("sync", "state", "show", name, "--stream", "nope")
    assert bad.exit_code == 2 and "has no stream 'nope'" in bad.stderr
    before = counts(world.url)
    r = cli("sync", "state", "reset", name)  # off a terminal, without --yes
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert counts(world.url) == before
    assert cli.json("sync", "state", "show", name)[0]["cursor"] is not None

    reset = cli.json("sync", "state", "reset", name, "--yes")
    assert reset == {"connection": name, "streams": ["contact"], "reset": ["contact"]}
    [row] = cli.json("sync", "state", "show", name)
    assert row["cursor"] is None and row["last_pass_started_at"] is None
    assert row["records_seen"] == 3
    audits, events = world.audited("sync.state_reset", "connection.state_reset")
    assert len(audits) == 1 and audits[0].diff["before"]["contact"]["cursor"] is not None
    assert len(events) == 1 and events[0].payload["streams"] == ["contact"]

    # the next run reads every record again, and creates none twice
    again = world.run(name)
    assert (again.counts["fetched"], again.counts["unchanged"]) == (3, 3)
    assert not again.counts.get("created")
    assert len(world.records()) == 3
    assert cli.json("sync", "state", "show", name)[0]["cursor"] is not None


def test_state_reset_is_refused_while_a_run_holds_the_lock(world, cli) -> None:
    from mno.store import leases
    from mno.store.db import session_scope
    from mno.sync import connections, runlock

    world.connector("crm", "crm", Api(records=1))
    name = world.connect("crm")
    world.run(name)
    with session_scope(world.url) as s:
        cid = connections.get(s, name).id
        assert leases.acquire_lock(s, runlock.lock_name(cid), "other-host:1:x", runlock.LOCK_TTL)
    before = counts(world.url)
    r = cli("sync", "state", "reset", name, "--yes")
    assert r.exit_code == 1 and "is syncing (held by other-host:1:x)" in r.stderr
    assert counts(world.url) == before
    assert cli.json("sync", "state", "show", name)[0]["cursor"] is not None


def _conflict(world, preemption: str) -> tuple[Api, Api, str, str]:
    """c1 edited in crm and its twin in books; books' run meets the conflict."""
    a, b = Api(records=2), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm = world.connect("crm")
    books = world.connect("books", preemption=preemption)
    world.run(crm)  # creates the records and pushes them to books
    twin = next(rid for rid, r in b.rows.items() if r["email"] == "u1@x.test")
    a.edit("c1", name="platform side")
    b.edit(twin, name="app side")
    world.run(crm)  # propagation runs books: pull (the conflict), then push
    return a, b, books, twin


def _record(world) -> object:
    return next(r for r in world.records() if r.data["email"] == "u1@x.test")


def test_keep_local_puts_the_platform_version_back_and_pushes_it(
    world, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNO_ACTOR", "ops@acme")
    a, b, books, twin = _conflict(world, "app")
    assert _record(world).data["name"] == "app side" and b.rows[twin]["name"] == "app side"

    [c] = cli.json("sync", "conflicts", "list", books, "--open")
    assert (c["winner"], c["status"], c["fields"]) == ("app", "open", ["name"])
    assert c["platform"]["name"] == "platform side" and c["app"]["name"] == "app side"
    assert c["record_id"] == str(_record(world).id)
    table = cli("sync", "conflicts", "list", books)
    assert "name=platform side" in table.stdout and "name=app side" in table.stdout
    assert cli.json("sync", "conflicts", "list", "acme/crm") == []

    before = counts(world.url)
    r = cli("sync", "conflicts", "resolve", c["id"], "--keep", "local")
    assert r.exit_code == 2 and "--yes" in r.stderr
    r = cli("sync", "conflicts", "resolve", c["id"], "--keep", "theirs", "--yes")
    assert r.exit_code == 2 and "invalid --keep 'theirs'" in r.stderr
    assert counts(world.url) == before

    done = cli.json("sync", "conflicts", "resolve", c["id"], "--keep", "local", "--yes")
    assert done["status"] == "resolved" and done["resolution"] == "local"
    assert done["resolved_by"] == "ops@acme" and done["resolved_at"].endswith("Z")
    assert done["changed"] is True
    record = _record(world)
    assert record.data["name"] == "platform side"
    assert b.rows[twin]["name"] == "platform side"  # pushed to the app
    assert a.rows["c1"]["name"] == "platform side" and not a.writes
    history = cli.json("record", "history", "contact", str(record.id))
    assert history[-1]["source"] == f"resolve:{c['id']}"
    assert history[-1]["after"]["name"] == "platform side"
    audits, events = world.audited("sync.conflict_resolve", "conflict.resolved")
    assert len(audits) == 1 and audits[0].actor == "ops@acme"
    assert len(events) == 1 and events[0].payload["keep"] == "local"

    assert cli.json("sync", "conflicts", "list", books, "--open") == []
    [resolved] = cli.json("sync", "conflicts", "list", books, "--limit", "1")
    assert resolved["status"] == "resolved"
    again = cli("sync", "conflicts", "resolve", c["id"], "--keep", "remote", "--yes")
    assert again.exit_code == 1 and "was resolved (local) by ops@acme" in again.stderr
    # the pushed version comes back from books as an echo, not as a change
    assert not world.run(books).counts.get("updated")


def test_keep_remote_applies_the_app_version(world, cli) -> None:
    a, b, books, twin = _conflict(world, "platform")
    # the platform won: the app was corrected
    assert _record(world).data["name"] == "platform side"
    assert b.rows[twin]["name"] == "platform side"
    [c] = cli.json("sync", "conflicts", "list", books, "--open")
    assert c["winner"] == "platform" and c["app"]["name"] == "app side"

    done = cli.json("sync", "conflicts", "resolve", c["id"], "--keep", "remote", "--yes")
    assert done["resolution"] == "remote" and done["changed"] is True
    assert _record(world).data["name"] == "app side"
    # every app gets the kept version, the one it came from included
    assert a.rows["c1"]["name"] == "app side"
    assert b.rows[twin]["name"] == "app side"
    assert cli.json("sync", "conflicts", "list", books, "--open") == []


def test_resolve_unknown_or_bad_ids(world, cli) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    r = cli("sync", "conflicts", "resolve", missing, "--keep", "local", "--yes")
    assert r.exit_code == 1 and f"conflict {missing} not found" in r.stderr
    r = cli("sync", "conflicts", "resolve", "x", "--keep", "local", "--yes")
    assert r.exit_code == 2 and "invalid conflict id 'x'" in r.stderr
    r = cli("sync", "conflicts", "list", "acme/none")
    assert r.exit_code == 1 and "connection acme/none not found" in r.stderr


def test_a_record_changed_since_the_conflict_needs_force(world, cli) -> None:
    a, b, books, twin = _conflict(world, "platform")
    [c] = cli.json("sync", "conflicts", "list", books, "--open")
    a.edit("c1", name="later still")
    world.run("acme/crm")
    assert _record(world).data["name"] == "later still"
    before = counts(world.url)
    r = cli("sync", "conflicts", "resolve", c["id"], "--keep", "remote", "--yes")
    assert r.exit_code == 1 and "changed since the conflict" in r.stderr
    assert counts(world.url) == before
    assert cli.json("sync", "conflicts", "list", books, "--open")[0]["id"] == c["id"]
    done = cli.json("sync", "conflicts", "resolve", c["id"], "--keep", "remote", "--yes", "--force")
    assert done["changed"] is True and _record(world).data["name"] == "app side"
    assert a.rows["c1"]["name"] == "app side" and b.rows[twin]["name"] == "app side"
