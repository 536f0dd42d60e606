"""`mno sync rollback` shows its plan: the records to restore, the records changed since
the run (field by field, both values) and what --force would overwrite."""

from __future__ import annotations

import json

from tests.conftest import counts
from tests.sync.api import Api


def _names(world) -> dict[str, str]:
    return {r.data["email"]: r.data["name"] for r in world.records()}


def test_dry_run_shows_a_later_edit_as_a_conflict_and_force_overwrites_it(world, cli) -> None:
    api = Api(records=2)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    world.run(name)
    api.edit("c1", name="bad 1")
    api.edit("c2", name="bad 2")
    bad = world.run(name)
    api.edit("c1", name="later", phone="555")  # changed again after the run
    world.run(name)
    before = counts(world.url)

    plan = cli.json("sync", "rollback", str(bad.id), "--dry-run")
    assert plan["applied"] is False and plan["refused"] is True
    assert {(r["entity"], r["restore"], r["conflict"]) for r in plan["records"]} == {
        ("contact", "restore", True),
        ("contact", "restore", False),
    }
    [conflict] = plan["conflicts"]
    c1 = next(r for r in plan["records"] if r["conflict"])
    assert conflict["record_id"] == c1["record_id"]
    assert c1["before"]["name"] == "name 1" and c1["current"]["name"] == "later"
    assert conflict["changes"] == [
        {"field": "name", "after_run": "bad 1", "current": "later"},
        {"field": "phone", "after_run": None, "current": "555"},
    ]
    assert conflict["overwrites"] == [
        {"field": "name", "current": "later", "restore": "name 1"},
        {"field": "phone", "current": "555", "restore": None},
    ]
    assert conflict["later_run"] != str(bad.id)

    # the table: the records, then the conflict's fields with both values and the write
    r = cli("sync", "rollback", str(bad.id), "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "Changed since the run" in r.stderr  # a title off a terminal: stdout holds rows
    line = next(x for x in r.stdout.splitlines() if "\tname\t" in x and "later" in x)
    assert line.split("\t")[2:] == [
        "name",
        "bad 1",
        "later",
        "name 1",
    ]
    assert "would refuse: later runs changed 1 record(s)" in r.stderr
    assert counts(world.url) == before

    # without --force: refused with the same plan on stdout, nothing written
    r = cli("sync", "rollback", str(bad.id), "-o", "json")
    assert r.exit_code == 1
    assert "later runs changed 1 of the records" in r.stderr
    assert json.loads(r.stdout)["conflicts"] == plan["conflicts"]
    assert counts(world.url) == before
    assert _names(world) == {"u1@x.test": "later", "u2@x.test": "bad 2"}
    assert api.rows["c1"]["name"] == "later" and not api.writes

    # a forced dry run says what it would overwrite and still writes nothing
    r = cli("sync", "rollback", str(bad.id), "--dry-run", "--force")
    assert r.exit_code == 0
    assert "would restore 2 record(s), overwriting 1 later change(s)" in r.stderr
    assert counts(world.url) == before

    done = cli.json("sync", "rollback", str(bad.id), "--force")
    assert done["applied"] is True and done["forced"] is True
    assert _names(world) == {"u1@x.test": "name 1", "u2@x.test": "name 2"}
    assert api.rows["c1"]["name"] == "name 1" and api.rows["c1"]["phone"] is None


def test_a_record_deleted_since_the_run_is_a_conflict(world, cli) -> None:
    api = Api(records=1)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    world.run(name)
    api.edit("c1", name="bad")
    bad = world.run(name)
    api.delete("c1")
    world.run(name)
    plan = cli.json("sync", "rollback", str(bad.id), "--dry-run")
    [conflict] = plan["conflicts"]
    assert conflict["action"] == "delete"
    assert conflict["changes"] == [{"field": "(deleted)", "after_run": False, "current": True}]
    assert conflict["overwrites"] == [{"field": "(deleted)", "current": True, "restore": False}]
    assert plan["records"][0]["current"] is None
