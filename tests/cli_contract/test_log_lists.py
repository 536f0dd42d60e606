"""The logs page like every other list: ``events list``, ``sync runs``, ``sync conflicts
list``, ``record list`` and ``webhook deliveries list`` take ``--limit``, ``--after
CURSOR`` and ``--all``, on SQLite and PostgreSQL.

Rows are written straight into the store, several of them at the same instant, so a page
boundary falls between rows that only their id (or sequence number) tells apart: walking
the pages with the printed cursors must visit each row once, in the order ``--all``
streams them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mno.store.db import session_scope
from mno.store.models.sync import (
    SyncConflict,
    SyncConnection,
    SyncConnector,
    SyncRecord,
    SyncRun,
)
from mno.store.models.tenancy import App
from mno.store.models.webhooks import WebhookDelivery
from mno.tenancy import tenants
from tests.conftest import counts

HINT = re.compile(r"^… more results: (.+) --after (\S+) \(or --all\)$")
N = 23  # rows of each log: pages of 5 end inside groups of rows made at one instant
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _at(i: int) -> datetime:
    return T0 + timedelta(minutes=i // 4)  # four rows share each instant


def _seed(url: str) -> None:
    with session_scope(url) as s:
        acme, other = tenants.create_many(s, [{"key": "acme"}, {"key": "other"}])
        app = App(code="crm", name="CRM", owner_id=acme)
        s.add(app)
        s.flush()
        connector = SyncConnector(name="crm", app_id=app.id, spec={}, spec_hash="x")
        s.add(connector)
        s.flush()
        conn = SyncConnection(name="acme/crm", tenant_id=acme, connector_id=connector.id)
        s.add(conn)
        s.flush()
        runs = [
            SyncRun(connection_id=conn.id, status="success", started_at=_at(i)) for i in range(N)
        ]
        s.add_all(runs)
        records = [
            SyncRecord(
                tenant_id=acme if i % 3 else other,
                entity="contact",
                data={"n": i},
                content_hash=str(i),
                created_at=_at(i),
                deleted_at=_at(i) if i % 7 == 0 else None,
            )
            for i in range(N)
        ]
        s.add_all(records)
        s.flush()
        s.add_all(
            SyncConflict(
                run_id=runs[i].id,
                record_id=records[i].id,
                connection_id=conn.id,
                entity="contact",
                winner="app",
                rule="newer",
                platform_data={"n": i},
                app_data={"n": -i},
                created_at=_at(i),
                resolved_at=_at(i) if i % 2 else None,
            )
            for i in range(N)
        )
        s.add_all(
            WebhookDelivery(
                target_id=uuid.uuid4(),
                event_id=uuid.uuid4(),
                seq=i // 2,  # two targets of each event
                event_type="tenant.created" if i % 4 else "tenant.updated",
                event_at=_at(i),
                body="{}",
                created_at=_at(i),
                status="succeeded" if i % 5 else "exhausted",
            )
            for i in range(N)
        )


def _pages(cli: Any, args: list[str], limit: int) -> tuple[list[Any], int]:
    """Every row of the list, ``limit`` at a time after each printed cursor; the count of
    pages."""
    rows: list[Any] = []
    more: list[str] = []
    pages = 0
    while True:
        result = cli(*args, "--limit", str(limit), *more, "-o", "json")
        assert result.exit_code == 0, (args, result.stderr)
        page = json.loads(result.stdout)
        assert len(page) <= limit
        rows += page
        pages += 1
        hints = [line for line in result.stderr.splitlines() if "more results" in line]
        if not hints:
            return rows, pages
        found = HINT.match(hints[0])
        assert found and len(page) == limit, hints
        assert found.group(1).endswith(" ".join([*args, "--limit", str(limit), "--output json"]))
        more = ["--after", found.group(2)]


LOGS = {
    "sync runs": (["sync", "runs"], N, "started_at", True),
    "sync runs of one connection": (["sync", "runs", "--connection", "acme/crm"], N, None, True),
    "conflicts": (["sync", "conflicts", "list", "acme/crm"], N, "created_at", True),
    "open conflicts": (["sync", "conflicts", "list", "acme/crm", "--open"], 12, None, True),
    "records": (["record", "list", "contact"], N - 4, None, False),
    "records of a tenant": (["record", "list", "contact", "--tenant", "acme"], 13, None, False),
    "records with deleted": (["record", "list", "contact", "--deleted"], N, None, False),
    "deliveries": (["webhook", "deliveries", "list"], N, "created_at", True),
    "exhausted deliveries": (
        ["webhook", "deliveries", "list", "--status", "exhausted"],
        5,
        None,
        True,
    ),
}


@pytest.mark.parametrize("name", list(LOGS))
def test_a_log_pages_with_the_printed_cursor(cli: Any, store_url: str, name: str) -> None:
    args, count, stamp, newest_first = LOGS[name]
    _seed(store_url)
    everything = cli.json(*args, "--all")
    assert len(everything) == count
    assert len({r["id"] for r in everything}) == count
    if stamp:
        times = [r[stamp] for r in everything]
        assert times == sorted(times, reverse=newest_first)
    for limit in (5, 4):
        rows, pages = _pages(cli, args, limit)
        assert rows == everything, (name, limit)
        assert pages == -(-count // limit)
    first = cli.json(*args)  # the default page (100) holds them all
    assert first == everything
    tail = json.loads(cli(*args, "--all", "--after", _cursor(cli, args, 3), "-o", "json").stdout)
    assert tail == everything[3:]


def _cursor(cli: Any, args: list[str], limit: int) -> str:
    result = cli(*args, "--limit", str(limit))
    found = HINT.match(result.stderr.strip().splitlines()[-1])
    assert found, result.stderr
    return found.group(2)


def test_a_table_page_keeps_stdout_for_rows(cli: Any, sqlite_url: str) -> None:
    _seed(sqlite_url)
    result = cli("sync", "runs", "--limit", "3")
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[0].startswith("ID\t")
    assert "more results" not in result.stdout
    assert re.search(r"sync runs --limit 3 --after %\S+ \(or --all\)$", result.stderr.strip())


def test_events_page_newest_first_and_follow_oldest_first(cli: Any, store_url: str) -> None:
    with session_scope(store_url) as s:
        tenants.create_many(s, [{"key": f"t-{i:02d}"} for i in range(N - 1)])  # and system
    everything = cli.json("events", "list", "--all")
    seqs = [e["seq"] for e in everything]
    assert len(seqs) == N and seqs == sorted(seqs, reverse=True)
    rows, pages = _pages(cli, ["events", "list"], 5)
    assert rows == everything and pages == 5
    # a sequence number follows the outbox oldest first; the next cursor is a number too
    # on PostgreSQL a followed event waits for the older transactions of the server, other
    # databases' too (see mno.store.outbox): wait for them, bounded
    deadline = time.monotonic() + 120
    while len(oldest := cli.json("events", "list", "--after", "0", "--all")) < N:
        assert time.monotonic() < deadline, "events held back for two minutes"
        time.sleep(0.05)
    assert oldest == everything[::-1]
    start = str(seqs[-1] + 2)  # after the third
    rows = []
    more = ["--after", start]
    while True:
        result = cli("events", "list", "--limit", "7", *more, "-o", "json")
        rows += json.loads(result.stdout)
        found = HINT.match(result.stderr.strip()) if result.stderr.strip() else None
        if found is None:
            break
        assert found.group(2).split(":")[-1] == str(rows[-1]["seq"])  # TX:SEQ on PostgreSQL
        more = ["--after", found.group(2)]
    assert rows == everything[::-1][3:]
    typed = cli.json("events", "list", "--type", "tenant.*", "--limit", "3")
    assert [e["seq"] for e in typed] == seqs[:3]


@pytest.mark.parametrize(
    "args",
    [
        ["events", "list", "--after", str(10**30)],
        ["events", "list", "--after", "-1"],
        ["events", "list", "--after", "1.5"],
        ["events", "list", "--after", "%WzFlNDAwXQ"],  # [1e400]
        ["events", "list", "--after", "%WzFlMzBd"],  # [1e30]
        ["sync", "runs", "--after", "%not-a-cursor"],
        ["sync", "runs", "--after", "acme"],
        ["record", "list", "contact", "--after", "%WyJ4IiwieSJd"],  # ["x","y"]
        ["webhook", "deliveries", "list", "--after", "%WzEsMiwzXQ"],  # [1,2,3]
        ["sync", "conflicts", "list", "acme/crm", "--after", "%WzEsMl0"],  # [1,2]
    ],
)
def test_a_cursor_of_another_list_exits_2(cli: Any, sqlite_url: str, args: list[str]) -> None:
    _seed(sqlite_url)
    before = counts(sqlite_url)
    result = cli(*args)
    assert result.exit_code == 2, (args, result.stdout, result.stderr)
    assert result.stderr.startswith("Error: --after") and result.stderr.count("\n") == 1
    assert result.stdout == "" and counts(sqlite_url) == before
