"""`mno sync run CONNECTION --backfill`: records synced before a connection existed are
pushed to it exactly once."""

from __future__ import annotations

from tests.conftest import counts
from tests.sync.api import Api


def test_records_from_before_the_connection_are_pushed_exactly_once(world, cli) -> None:
    crm, books = Api(records=3), Api(records=1, name_prefix="b")
    world.connector("crm", "crm", crm)
    world.connector("books", "books", books)
    crm_name = world.connect("crm")
    world.run(crm_name)
    crm.delete("c3")
    world.run(crm_name)  # c3 deleted: never backfilled
    books_name = world.connect("books")  # added after the records were synced

    # an ordinary run pulls books' own record and pushes nothing to books
    first = cli.json("sync", "run", books_name)
    assert first["status"] == "success" and first["counts"]["created"] == 1
    assert not books.writes

    before = counts(world.url)
    dry = cli("sync", "run", books_name, "--backfill", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "would push 2 record(s) to acme/books" in dry.stderr
    dry_json = cli.json("sync", "run", books_name, "--backfill", "--dry-run")
    assert dry_json == {
        "connection": books_name,
        "dry_run": True,
        "entities": {"contact": 2},
        "records": 2,
    }
    assert counts(world.url) == before and not books.writes

    ran = cli.json("sync", "run", books_name, "--backfill")
    assert ran["status"] == "success"
    assert ran["backfill"]["records"] == 2 and ran["counts"]["pushed"] == 2
    assert sorted((m, b["name"]) for m, _, b in books.writes) == [
        ("POST", "name 1"),
        ("POST", "name 2"),
    ]
    assert sorted(r["name"] for r in books.rows.values()) == ["name 1", "name 1", "name 2"]
    audits, events = world.audited("sync.backfill", "connection.backfilled")
    assert len(audits) == 1 and audits[0].diff["after"]["records"] == 2
    assert len(events) == 1 and events[0].payload["entities"] == {"contact": 2}

    # idempotent: the id maps written by the pushes leave nothing to backfill
    assert cli.json("sync", "run", books_name, "--backfill", "--dry-run")["records"] == 0
    again = cli.json("sync", "run", books_name, "--backfill")
    assert again["backfill"]["records"] == 0 and again["counts"].get("pushed", 0) == 0
    assert len(books.writes) == 2
    # the pushed records come back as echoes, not as new records
    assert len(world.records()) == 3  # crm's two live ones and books' own
    assert world.audited("sync.backfill", "connection.backfilled")[0] == audits


def test_backfill_refusals(world, cli) -> None:
    world.connector("crm", "crm", Api(records=1))
    name = world.connect("crm", push=False)
    r = cli("sync", "run", name, "--backfill")
    assert r.exit_code == 1 and "does not push" in r.stderr
    r = cli("sync", "run", name, "--dry-run")
    assert r.exit_code == 2 and "--dry-run goes with --backfill" in r.stderr
