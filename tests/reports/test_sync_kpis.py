"""Sync KPIs against values counted by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mno import clock
from mno.reports import kpis
from mno.reports.model import Window
from mno.store.models.sync import (
    SyncChange,
    SyncConflict,
    SyncConnection,
    SyncConnector,
    SyncRecord,
    SyncRun,
)
from mno.tenancy import apps, tenants

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def seed(session) -> None:
    clock.set_now(NOW)
    with session() as s:
        tenant, _ = tenants.create(s, "acme")
        app, _ = apps.create(s, "Books", stack="connector")
        connectors = [
            SyncConnector(name=f"books-{i}", app_id=app.id, spec={}, spec_hash="x")
            for i in range(5)
        ]
        s.add_all(connectors)
        s.flush()
        healthy = SyncConnection(
            name="acme-books", tenant_id=tenant.id, connector_id=connectors[0].id
        )
        failing = SyncConnection(
            name="acme-books-2",
            tenant_id=tenant.id,
            connector_id=connectors[1].id,
            consecutive_failures=1,
        )
        recovery = SyncConnection(
            name="acme-books-3",
            tenant_id=tenant.id,
            connector_id=connectors[2].id,
            consecutive_failures=3,
        )
        paused = SyncConnection(
            name="acme-books-4", tenant_id=tenant.id, connector_id=connectors[3].id, paused=True
        )
        fresh = SyncConnection(
            name="acme-books-5", tenant_id=tenant.id, connector_id=connectors[4].id
        )
        s.add_all([healthy, failing, recovery, paused, fresh])
        s.flush()
        ok_old = SyncRun(
            connection_id=healthy.id,
            status="success",
            started_at=NOW - timedelta(hours=30),
            finished_at=NOW - timedelta(hours=30),
        )
        ok_new = SyncRun(
            connection_id=healthy.id,
            status="success",
            started_at=NOW - timedelta(hours=6),
            finished_at=NOW - timedelta(hours=6),
        )
        ok_failing = SyncRun(
            connection_id=failing.id,
            status="success",
            started_at=NOW - timedelta(hours=48),
            finished_at=NOW - timedelta(hours=48),
        )
        err = SyncRun(connection_id=failing.id, status="error", started_at=NOW, finished_at=NOW)
        s.add_all([ok_old, ok_new, ok_failing, err])
        s.flush()
        record = SyncRecord(tenant_id=tenant.id, entity="contact", data={}, content_hash="h")
        s.add(record)
        s.flush()
        # changes: 2 in October, 3 on Nov 19 and 1 on Nov 20; one conflict in November
        for when, n in (
            (datetime(2026, 10, 5, tzinfo=UTC), 2),
            (datetime(2026, 11, 19, 9, tzinfo=UTC), 3),
            (datetime(2026, 11, 20, 9, tzinfo=UTC), 1),
        ):
            for _ in range(n):
                s.add(
                    SyncChange(
                        run_id=ok_new.id,
                        record_id=record.id,
                        tenant_id=tenant.id,
                        entity="contact",
                        action="update",
                        source="books",
                        created_at=when,
                        updated_at=when,
                    )
                )
        s.add(
            SyncConflict(
                run_id=ok_new.id,
                record_id=record.id,
                connection_id=healthy.id,
                entity="contact",
                winner="app",
                rule="newest",
            )
        )


def test_sync_kpis_by_hand(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.sync_report(s, Window.ending("2026-11", 2))
    assert report.metrics == {
        "connections": 5,
        "by_health": {"failing": 1, "healthy": 1, "never_synced": 1, "paused": 1, "recovery": 1},
        "oldest_last_success_h": 48.0,
        "changes_in_window": 6,
        "conflicts_in_window": 1,
    }
    by_name = {row["connection"]: row for row in report.tables["connections"]}
    assert by_name["acme-books"]["last_success_age_h"] == 6.0
    assert by_name["acme-books"]["health"] == "healthy"
    assert by_name["acme-books-5"]["last_success_age_h"] is None
    assert report.tables["changes_per_day"] == [{"day": "2026-10-21", "changes": 0}][:0] + [
        {"day": "2026-11-19", "changes": 3},
        {"day": "2026-11-20", "changes": 1},
    ]
    assert report.tables["monthly"] == [
        {"month": "2026-10", "changes": 2, "conflicts": 0},
        {"month": "2026-11", "changes": 4, "conflicts": 1},
    ]
