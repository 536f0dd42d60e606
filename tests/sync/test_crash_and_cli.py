"""A kill -9 in the middle of `mno sync run`, then resume; the CLI; spec validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from mno.store.lookup import PREFIX_HINT
from tests.conftest import counts
from tests.sync.api import Api, connector_yaml


def _q(url: str, sql: str) -> int:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_kill_9_mid_sync_then_resume_without_loss_or_duplicates(world) -> None:
    api = Api(records=300)
    api.delay = 0.05
    world.connector("crm", "crm", api, size=10)
    name = world.connect("crm")
    env = dict(os.environ, MNO_DB_URL=world.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "sync", "run", name],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _q(world.url, "SELECT count(*) FROM sync_record") >= 60:
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = _q(world.url, "SELECT count(*) FROM sync_record")
    assert 0 < committed < 300
    assert committed % 10 == 0  # whole pages only
    # the dead run's lock has not expired yet, but its process is gone: the next run
    # takes the lock over at once and resumes
    api.delay = 0
    requests_before = api.requests
    run = world.run(name)
    assert run.status == "success", run.error
    assert run.counts["created"] == 300 - committed
    assert api.requests - requests_before <= (300 - committed) // 10 + 2  # from the checkpoint
    assert _q(world.url, "SELECT count(*) FROM sync_record") == 300
    assert _q(world.url, "SELECT count(DISTINCT external_id) FROM sync_id_map") == 300
    assert _q(world.url, "SELECT count(*) FROM sync_id_map") == 300
    assert _q(world.url, "SELECT count(*) FROM sync_change WHERE action='create'") == 300
    assert _q(world.url, "SELECT count(*) FROM outbox_event WHERE type='record.created'") == 300
    assert _q(world.url, "SELECT count(*) FROM sync_run WHERE error='interrupted'") == 1


def test_cli_tour(world, cli, tmp_path) -> None:
    api = Api(records=12)
    server = world.serve(api)
    path = tmp_path / "crm.yaml"
    path.write_text(connector_yaml("crm", "crm", server.url, size=5))
    os.environ["MNO_SECRET_CRM_TOKEN"] = "t"
    try:
        r = cli("connector", "apply", "-f", str(path))
        assert r.exit_code == 0, r.stderr
        assert cli.json("connector", "list")[0]["name"] == "crm"
        rows = cli.json("connector", "test", "crm")
        assert len(rows) == 5 and rows[0]["email"] == "u1@x.test"
        added = cli.json("connection", "add", "acme", "crm", "--entities", "contact", "--no-push")
        assert added["push"] is False and added["name"] == "acme/crm"
        ran = cli.json("sync", "run", "acme/crm")
        assert ran["status"] == "success" and ran["counts"]["created"] == 12
        shown = cli.json("sync", "run", "show", ran["id"])
        assert shown["id"] == ran["id"]
        assert cli.json("sync", "run", "show", ran["id"][:8]) == shown  # a short id
        assert cli.json("sync", "runs", "--connection", "acme/crm")[0]["id"] == ran["id"]
        recs = cli.json("record", "list", "contact", "--tenant", "acme")
        assert len(recs) == 12
        # made in one run, the ids share their first digits: the table shows enough of each
        table = cli("record", "list", "contact", "--tenant", "acme").stdout.splitlines()[1:]
        shown = [line.split("\t")[0] for line in table]
        assert len(set(shown)) == 12 and all(len(s) < 36 for s in shown)
        for short in shown[:3]:
            assert cli.json("record", "show", "contact", short)["id"].startswith(short)
        one = cli.json("record", "show", "contact", recs[0]["id"])
        assert one["links"][0]["connection"] == "acme/crm"
        hist = cli.json("record", "history", "contact", recs[0]["id"])
        assert hist[0]["action"] == "create" and hist[0]["run_id"] == ran["id"]
        api.edit("c1", name="oops")
        bad = cli.json("sync", "run", "acme/crm")
        dry = cli.json("sync", "rollback", bad["id"], "--dry-run")
        assert dry["applied"] is False and len(dry["records"]) == 1
        done = cli.json("sync", "rollback", bad["id"])
        assert done["applied"] is True
        assert cli("connection", "pause", "acme/crm").exit_code == 0
        r = cli("sync", "run", "acme/crm")
        assert r.exit_code == 1 and "paused" in r.stderr
        assert cli("connection", "resume", "acme/crm").exit_code == 0
        assert cli("sync", "run", "show", "nope").exit_code == 2
        assert cli("connection", "remove", "acme/crm", "--yes").exit_code == 0
        assert cli.json("connection", "list") == []
    finally:
        os.environ.pop("MNO_SECRET_CRM_TOKEN", None)


def test_rollback_refusal_lists_records_and_writes_nothing(world, cli) -> None:
    api = Api(records=2)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    world.run(name)
    api.edit("c1", name="x")
    bad = world.run(name)
    api.edit("c1", name="y")
    world.run(name)
    before = counts(world.url)
    r = cli("sync", "rollback", str(bad.id))
    assert r.exit_code == 1
    assert "later runs changed 1 of the records: contact" in r.stderr
    assert counts(world.url) == before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\napp: crm\nbase_url: ftp://x\nentities: []\n", "f.yaml:3: base_url:"),
        (
            "name: x\napp: crm\nbase_url: http://x\nentities:\n  - canonical: contact\n"
            "    list: {path: /c}\n    pagination:\n      type: cursor\n      param: c\n"
            "    mapping: {name: n}\n",
            "f.yaml:7: entities.0.pagination:",
        ),
        (
            "name: x\napp: crm\nbase_url: http://x\nauth:\n  type: bearer\n  token: plain\n"
            "entities:\n  - canonical: contact\n    list: {path: /c}\n    mapping: {name: n}\n",
            "f.yaml:6: auth.token:",
        ),
        (
            "name: x\napp: crm\nbase_url: http://x\nentities:\n  - canonical: contact\n"
            "    list: {path: /c}\n    mapping: {name: n}\n    colour: red\n",
            "f.yaml:8: entities.0.colour:",
        ),
    ],
)
def test_spec_errors_name_file_line_and_key(text: str, expected: str) -> None:
    from mno.errors import BadInput
    from mno.sync import spec

    with pytest.raises(BadInput) as err:
        spec.parse(text, "f.yaml")
    assert str(err.value).startswith(expected), str(err.value)


def test_connector_apply_bad_file_exits_2_and_writes_nothing(world, cli, tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\napp: crm\nbase_url: http://x\nentities: []\n")
    before = counts(world.url)
    r = cli("connector", "apply", "-f", str(path))
    assert r.exit_code == 2 and f"{path}:4: entities" in r.stderr
    assert counts(world.url) == before


def test_connector_app_must_be_connector_or_cloud(world) -> None:
    from mno.errors import BadInput
    from mno.store.db import session_scope
    from mno.sync import spec
    from mno.tenancy import apps

    with session_scope(world.url) as s:
        apps.create(s, "hosted", code="hosted", stack="nex", owner="acme", image="x:1", port=80)
    doc = spec.parse(
        "name: y\napp: hosted\nbase_url: http://x\nentities:\n  - canonical: contact\n"
        "    list: {path: /c}\n    mapping: {name: n}\n"
    )
    with session_scope(world.url) as s, pytest.raises(BadInput, match="stack nex"):
        spec.apply(s, doc)


def test_poller_tick_runs_due_connections(world) -> None:
    from mno.agents.base import TickContext
    from mno.agents.registry import load

    api = Api(records=3)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    with __import__("mno.store.db", fromlist=["x"]).session_scope(world.url) as s:
        s.execute(sa.text("UPDATE sync_connection SET next_run_at = NULL"))
    poller = load("poller")
    result = poller.tick(TickContext(agent="poller", db_url=world.url))
    assert result.done == 1
    assert len(world.records()) == 3
    # rescheduled an hour or more later (jitter), so a second tick does nothing
    assert poller.tick(TickContext(agent="poller", db_url=world.url)).claimed == 0
    assert json.dumps(name)


def test_example_connectors_validate() -> None:
    from pathlib import Path

    from mno.sync import spec

    root = Path(__file__).resolve().parents[2] / "configs" / "connectors"
    files = sorted(root.glob("*.yaml"))
    assert files
    for path in files:
        assert spec.load_file(path).entities


def test_time_ordered_ids_are_unique_and_sorted() -> None:
    from mno.store import bulk

    ids = bulk.uuids(5000) + bulk.uuids(5000)
    assert len(set(ids)) == 10000
    assert ids == sorted(ids)
    assert all(i.version == 7 for i in ids[:10])


def test_content_hash_text_is_the_standard_json_text() -> None:
    """Stored content hashes stay comparable: the hashed text is exactly what
    ``json.dumps`` with sorted keys and compact separators makes."""
    from datetime import UTC, datetime

    from mno.sync import mapping

    data = {
        "z": 1.5,
        "a": [1, {"b": None, "a": True}],
        "é": 'line\nbreak "quoted" \\ \u2603',
        "n": float("nan"),
        "when": datetime(2026, 1, 2, tzinfo=UTC),
        "big": 10**20,
    }
    standard = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    digest, text = mapping.hash_and_json(data)
    assert text == standard
    assert digest == mapping.content_hash(data)
    assert mapping.hash_and_json(data, ["n"])[0] == mapping.content_hash(
        {k: v for k, v in data.items() if k != "n"}
    )


def test_cli_tables_keys_and_errors(world, cli) -> None:
    """What the record, run and connector commands print, beyond the tour's JSON:
    table headers, the keys of each JSON view, and the messages of bad or unknown ids."""
    api = Api(records=3)
    world.connector("crm", "crm", api, size=2)
    name = world.connect("crm", push=False)
    first = world.run(name)
    api.edit("c1", name="edited")
    world.run(name)

    listed = cli("connector", "list")
    assert listed.exit_code == 0
    # off a terminal a table is tab-separated lines under a header line
    assert listed.stdout.split("\n")[0].split("\t") == [
        "NAME",
        "BASE URL",
        "ENTITIES",
        "UPDATED AT",
    ]
    assert cli("connector", "show", "crm").stdout.startswith("name: crm\nsource: ")
    shown = cli("sync", "run", "show", str(first.id))
    assert shown.stdout.split("\n")[:4] == [
        f"id\t{first.id}",
        f"connection\t{name}",
        "kind\tsync",
        "status\tsuccess",
    ]
    assert list(cli.json("sync", "run", "show", str(first.id))) == [
        "id", "connection", "kind", "status", "entity", "full", "forced",
        "started_at", "finished_at", "counts", "error",
    ]  # fmt: skip
    runs = cli("sync", "runs")
    assert runs.stdout.split("\n")[0].split("\t") == [
        "ID", "CONNECTION", "KIND", "STATUS", "STARTED AT", "FINISHED AT", "COUNTS",
    ]  # fmt: skip
    started = runs.stdout.split("\n")[1].split("\t")[4]
    assert len(started) == len("2026-11-02 10:00:00")  # to the second
    assert len(cli.json("sync", "runs", "--connection", name, "--limit", "1")) == 1

    records = cli.json("record", "list", "contact", "--limit", "2")
    assert len(records) == 2
    assert list(records[0]) == ["id", "entity", "version", "updated_at", "deleted_at", "data"]
    nothing = cli("record", "list", "nothing")
    assert (nothing.stdout, nothing.stderr) == ("", "No records.\n")
    c1 = next(r for r in cli.json("record", "list", "contact") if r["data"]["name"] == "edited")
    one = cli.json("record", "show", "contact", c1["id"])
    assert list(one) == ["id", "entity", "version", "updated_at", "deleted_at", "data", "links"]
    assert one["links"] == [
        {
            "connection": name,
            "external_id": "c1",
            "last_pulled_at": one["links"][0]["last_pulled_at"],
            "last_pushed_at": None,
        }
    ]
    # time-ordered ids made together share their first digits: a prefix long enough works
    assert cli.json("record", "show", "contact", c1["id"][:24]) == one
    history = cli.json("record", "history", "contact", c1["id"])
    assert cli.json("record", "history", "contact", c1["id"][:24]) == history
    assert [list(h) for h in history] == [
        ["seq", "at", "run_id", "source", "action", "before", "after"]
    ] * 2
    assert [h["action"] for h in history] == ["create", "update"]
    assert history[0]["after"] == history[1]["before"]
    nothing = cli("record", "history", "other", c1["id"])
    assert (nothing.stdout, nothing.stderr) == ("", "No changes.\n")

    missing = "00000000-0000-0000-0000-000000000000"
    for args, code, message in [
        (("sync", "run", "show"), 2, "Error: missing run id (mno sync run show RUN_ID)\n"),
        (
            ("sync", "run", "show", "nope"),
            2,
            f"Error: invalid sync run id 'nope' ({PREFIX_HINT})\n",
        ),
        (
            ("sync", "run", "show", missing),
            1,
            f"Error: sync run {missing} not found (see `mno sync runs`)\n",
        ),
        (("sync", "rollback", "bad"), 2, f"Error: invalid sync run id 'bad' ({PREFIX_HINT})\n"),
        (
            ("record", "show", "contact", "bad"),
            2,
            f"Error: invalid record id 'bad' ({PREFIX_HINT})\n",
        ),
        (("record", "show", "contact", missing), 1, f"Error: contact {missing} not found\n"),
        (("record", "show", "other", c1["id"]), 1, f"Error: other {c1['id']} not found\n"),
        (
            ("record", "history", "contact", "x"),
            2,
            f"Error: invalid record id 'x' ({PREFIX_HINT})\n",
        ),
    ]:
        r = cli(*args)
        assert (r.exit_code, r.stderr) == (code, message), args

    bad = cli.json("sync", "runs", "--limit", "1")[0]["id"]
    dry = cli("sync", "rollback", bad, "--dry-run")
    assert dry.exit_code == 0
    assert dry.stdout.split("\n")[0].split("\t")[:3] == ["RECORD ID", "ENTITY", "ACTION"]
    # ids are shown short in tables
    assert dry.stdout.split("\n")[1].split("\t")[:3] == [c1["id"][:8], "contact", "restore"]
    assert dry.stderr == "✓ would restore 1 record(s)\n"
    done = cli("sync", "rollback", bad)
    assert done.exit_code == 0 and done.stderr == "✓ restored 1 record(s)\n"
    assert cli.json("record", "show", "contact", c1["id"])["data"]["name"] == "name 1"
