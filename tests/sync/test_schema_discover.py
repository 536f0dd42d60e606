"""Typed records and discovery against real servers on loopback: an entity's JSON Schema
turns a bad record into a record error of the run (the rest is stored), and
``mno connector discover`` proposes a document that validates and syncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from tests.sync.api import Api, connector_yaml
from tests.sync.apps import Listing, items, listing_app, serve

SCHEMA = """    schema:
      type: object
      properties:
        name: {type: string}
        phone: {type: string, pattern: "^[0-9+ ]+$"}
      required: [name, phone]
"""


def errors(url: str) -> list[tuple[str, str]]:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT external_id, message FROM sync_record_error ORDER BY external_id")
        )
        return [(r[0], r[1]) for r in rows]


def apply(world: Any, text: str) -> None:
    from mno.store.db import session_scope
    from mno.sync import spec

    path: Path = world.tmp / "connector.yaml"
    path.write_text(text)
    with session_scope(world.url) as s:
        spec.apply(s, spec.load_file(path), str(path))


def test_schema_failures_are_record_errors_not_a_failed_run(world: Any, cli: Any) -> None:
    api = Api()
    for i in range(1, 7):
        api.create(name=f"n{i}", email=f"u{i}@x.test", phone=f"+1 555 {i}")
    api.edit("c2", phone=None)  # missing
    api.edit("c5", phone="call me")  # bad pattern
    server = world.serve(api)
    world.monkeypatch.setenv("MNO_SECRET_CRM_TOKEN", "t0ken")
    text = connector_yaml("crm", "crm", server.url, size=4)
    apply(world, text.replace("    ignore_fields:", SCHEMA + "    ignore_fields:"))
    name = world.connect("crm", push=False)
    run = world.run(name)
    assert run.status == "success", run.error
    assert run.counts["invalid"] == 2 and run.counts["created"] == 4
    assert sorted(r.data["name"] for r in world.records()) == ["n1", "n3", "n4", "n6"]
    errs = errors(world.url)
    assert [e[0] for e in errs] == ["c2", "c5"]
    assert "phone" in errs[0][1] and "None is not of type 'string'" in errs[0][1]
    assert "phone" in errs[1][1] and "does not match" in errs[1][1]
    shown = cli.json("sync", "run", "show", str(run.id))
    assert shown["counts"]["invalid"] == 2
    assert [(e["external_id"], e["message"]) for e in shown["record_errors"]] == errs
    # a known record that stops validating is an error, and a full pass keeps it
    api.edit("c3", phone="?")
    run = world.run(name, full=True)
    assert run.status == "success", run.error
    assert run.counts["invalid"] == 3
    assert not run.counts.get("deleted")
    assert sorted(r.data["name"] for r in world.records()) == ["n1", "n3", "n4", "n6"]


def test_invalid_schema_is_a_spec_error() -> None:
    from mno.errors import BadInput
    from mno.sync import spec

    text = connector_yaml("crm", "crm", "http://h").replace(
        "    ignore_fields:", "    schema: {type: 12}\n    ignore_fields:"
    )
    with pytest.raises(BadInput, match="invalid JSON Schema"):
        spec.parse(text)


def test_discover_link_listing_proposes_a_document_that_syncs(world: Any) -> None:
    from mno.sync import discover

    api = Api()
    api.create(name="nobody", email=None)  # a null among strings, on the sampled page
    api.bulk_create(7)
    server = world.serve(api)
    world.monkeypatch.setenv("MNO_SECRET_CRM_TOKEN", "t0ken")
    proposal = discover.discover(
        server.url + "/link/contacts?limit=3",
        auth={"type": "bearer", "token": "secret:CRM_TOKEN"},
        name="crm",
        app="crm",
    )
    doc = proposal.document
    ent = doc["entities"][0]
    assert ent["canonical"] == "contact"
    assert ent["list"] == {"path": "/link/contacts"}  # limit: the size parameter
    assert ent["records"] == ""
    assert ent["pagination"] == {
        "type": "link",
        "size_param": "limit",
        "size": 3,
        "stop": "no_next",
    }
    assert ent["id"] == "id" and ent["updated_at"] == "updated_at"
    assert ent["deleted"] == {"flag": "is_deleted"}
    props = ent["schema"]["properties"]
    assert props["updated_at"] == {"type": "string", "format": "date-time"}
    assert props["is_deleted"] == {"type": "boolean"}
    assert props["fetched_at"] == {"type": "number"}
    assert props["phone"] == {"type": "null"}
    assert props["email"] == {"type": ["null", "string"]}
    assert "email" not in ent["schema"]["required"] and "name" in ent["schema"]["required"]
    assert any("updated_since" in n for n in proposal.notes)
    # the proposal, as printed, is a document mno accepts and syncs with
    apply(world, yaml.safe_dump(doc, sort_keys=False))
    run = world.run(world.connect("crm", push=False))
    assert run.status == "success", run.error
    assert len(world.records()) == 8 and not run.counts.get("invalid")


@pytest.mark.parametrize(
    ("path", "expect"),
    [
        (
            "/total/items?per_page=5",
            {
                "type": "page",
                "param": "page",
                "size_param": "per_page",
                "size": 5,
                "stop": "total",
                "total_header": "x-total-count",
            },
        ),
        (
            "/next/items",
            {"type": "next_url", "next_url_path": "links.next", "size": 4, "stop": "no_next"},
        ),
    ],
)
def test_discover_pagination_guesses(path: str, expect: dict[str, Any], cli: Any) -> None:
    listing = Listing(items(10))
    with serve(listing_app(listing)) as url:
        result = cli("connector", "discover", "--url", url, "--path", path)
    assert result.exit_code == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    ent = doc["entities"][0]
    assert ent["pagination"] == expect
    assert ent["canonical"] == "item"
    assert ent["schema"]["properties"]["price"] == {"type": "number"}
    assert "app: give the code" in result.stderr
