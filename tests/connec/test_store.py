"""Connec writes at the store level, on SQLite and PostgreSQL: one transaction with its
change rows, audit row and events, all or nothing; `mno sync rollback` rolls a Connec
transaction back; the CLI reads, filters and writes like the API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from mno.connec import access, queries
from mno.connec.writes import Op, Writer, apply
from mno.errors import BadInput
from tests.conftest import counts


@pytest.fixture
def writer(session: Any) -> Writer:
    from mno.tenancy import apps, tenants

    with session() as s:
        tenants.create(s, "acme", name="Acme")
        tenants.create(s, "globex", name="Globex")
        apps.create(s, "CRM", code="crm", owner="acme")
        return access.writer_for(s, apps.get(s, "crm"), "acme")


def table_count(url: str, table: str, where: str = "") -> int:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} {where}")).scalar_one())


def test_a_write_is_one_transaction_with_history_audit_and_events(
    session: Any, writer: Writer, store_url: str
):
    before = counts(store_url)
    with session() as s:
        out = apply(
            s,
            writer,
            [
                Op("create", "organizations", {"name": "A"}, app_id="a"),
                Op("create", "organizations", {"name": "B"}),
                Op("create", "organizations", {"nom": "invalid"}),
            ],
        )
    assert [r.status for r in out.results] == [201, 201, 422]
    audit_rows, events = counts(store_url)
    assert (audit_rows - before[0], events - before[1]) == (1, 2)
    assert table_count(store_url, "sync_change", "WHERE source = 'app:crm'") == 2
    assert table_count(store_url, "sync_run", "WHERE kind = 'connec'") == 1
    assert table_count(store_url, "sync_id_map") == 1
    with session(write=False) as s:
        rec = queries.get_by_app_id(s, writer, "organizations", "a")
        assert rec["data"] == {"name": "A"} and rec["app_id"] == "a"
    # an event too large for the outbox fails the whole write: nothing is kept
    huge = {"name": "Huge", "notes": "x" * 300_000}
    with pytest.raises(BadInput, match="byte limit"), session() as s:
        apply(
            s,
            writer,
            [Op("create", "organizations", {"name": "C"}), Op("create", "organizations", huge)],
        )
    assert counts(store_url) == (audit_rows, events)
    assert table_count(store_url, "sync_record") == 2
    assert table_count(store_url, "sync_change") == 2


def test_other_tenants_and_unknown_apps_are_not_found(session: Any, writer: Writer):
    from mno.errors import NotFound
    from mno.tenancy import apps

    with session() as s:
        crm = apps.get(s, "crm")
        with pytest.raises(NotFound, match="no tenant globex"):
            access.writer_for(s, crm, "globex")
        with pytest.raises(NotFound, match="no tenant nope"):
            access.writer_for(s, crm, "nope")
        out = apply(s, writer, [Op("create", "items", {"name": "Mine"})])
        rid = out.results[0].record["id"]
        stranger = Writer(uuid.uuid4(), writer.app_id, "crm")
        with pytest.raises(NotFound):
            queries.get(s, stranger, "items", rid)
        res = apply(s, stranger, [Op("delete", "items", None, id=rid)])
        assert res.results[0].status == 404 and res.transaction_id is None


def test_sync_rollback_restores_a_connec_transaction(
    session: Any, writer: Writer, cli: Any, store_url: str
):
    with session() as s:
        rid = apply(s, writer, [Op("create", "items", {"name": "v1"})]).results[0].record["id"]
        tx = apply(s, writer, [Op("patch", "items", {"name": "v2"}, id=rid)]).transaction_id
    result = cli("sync", "rollback", str(tx))
    assert result.exit_code == 0, result.stderr
    with session(write=False) as s:
        assert queries.get(s, writer, "items", rid)["data"] == {"name": "v1"}
        assert queries.get(s, writer, "items", rid)["version"] == 3


def test_cli_lists_filters_and_writes(session: Any, writer: Writer, cli: Any):
    made = cli.json(
        "record",
        "put",
        "invoices",
        "--tenant",
        "acme",
        "--app",
        "crm",
        "--app-id",
        "i-1",
        "--data",
        '{"transaction_date": "2024-03-01", "currency": "EUR", "total_amount": "250.00"}',
    )
    assert made["version"] == 1 and made["app_id"] == "i-1"
    cli.json(
        "record",
        "put",
        "invoices",
        "--tenant",
        "acme",
        "--data",
        '{"transaction_date": "2024-04-01", "currency": "EUR", "total_amount": "50"}',
    )
    found = cli.json(
        "record",
        "list",
        "invoices",
        "--tenant",
        "acme",
        "--filter",
        "total_amount gt 100",
    )
    assert [r["id"] for r in found] == [made["id"]]
    got = cli.json(
        "record", "get", "invoices", "i-1", "--tenant", "acme", "--app", "crm", "--by-app-id"
    )
    assert got["id"] == made["id"]
    stale = cli(
        "record",
        "put",
        "invoices",
        "--tenant",
        "acme",
        "--id",
        made["id"],
        "--patch",
        "--if-match",
        "7",
        "--data",
        '{"status": "paid"}',
    )
    assert stale.exit_code == 1 and "version 1, not 7" in stale.stderr
    bad = cli("record", "put", "invoices", "--tenant", "acme", "--data", '{"currency": "x"}')
    assert bad.exit_code == 2 and "invalid invoices" in bad.stderr
    assert cli("record", "list", "invoices", "--filter", "x eq 1").exit_code == 2
    patched = cli.json(
        "record",
        "put",
        "invoices",
        "--tenant",
        "acme",
        "--id",
        made["id"],
        "--patch",
        "--if-match",
        "1",
        "--data",
        '{"status": "paid"}',
    )
    assert patched["data"]["status"] == "paid"
    gone = cli.json("record", "delete", "invoices", made["id"], "--tenant", "acme", "--yes")
    assert gone["deleted_at"] is not None
    history = cli.json("record", "history", "invoices", made["id"])
    assert [h["action"] for h in history] == ["create", "update", "delete"]
    assert history[-1]["source"].startswith("operator:")
    # the sync engine's listing keeps working without a filter
    assert len(cli.json("record", "list", "invoices", "--tenant", "acme")) == 1
