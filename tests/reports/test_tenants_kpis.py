"""Tenant KPIs against values counted by hand from a seeded store."""

from __future__ import annotations

from datetime import UTC, datetime

from mno import clock
from mno.reports import kpis
from mno.reports.model import Window
from mno.tenancy import tenants


def _at(year: int, month: int, day: int = 10) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def seed(session) -> None:
    # Aug: ta, tb created.  Sep: tc created, ta provisioned.  Oct: ta suspended, tb provisioned,
    # tc provisioned then offboarded.  Nov: ta resumed (reactivated), td created (silo).
    clock.set_now(_at(2026, 8))
    with session() as s:
        tenants.create(s, "ta")
        tenants.create(s, "tb")
    clock.set_now(_at(2026, 9))
    with session() as s:
        tenants.create(s, "tc")
        tenants.provision(s, "ta")
    clock.set_now(_at(2026, 10))
    with session() as s:
        tenants.suspend(s, "ta", "arrears")
        tenants.provision(s, "tb")
        tenants.provision(s, "tc")
        tenants.offboard(s, "tc")
        tenants.update(s, "tb", in_arrears=True)
    clock.set_now(_at(2026, 11))
    with session() as s:
        tenants.resume(s, "ta")
        tenants.create(s, "td", tier="silo")


def test_tenant_kpis_by_hand(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.tenants_report(s, Window.ending("2026-11", 4))
    assert report.metrics == {
        "total": 4,
        "active": 2,  # ta (resumed) and tb
        "in_arrears": 1,
        "new_in_window": 4,
        "churned_in_window": 1,
        "reactivated_in_window": 1,
    }
    assert report.tables["monthly"] == [
        {"month": "2026-08", "new": 2, "churned": 0, "reactivated": 0},
        {"month": "2026-09", "new": 1, "churned": 0, "reactivated": 0},
        {"month": "2026-10", "new": 0, "churned": 1, "reactivated": 0},
        {"month": "2026-11", "new": 1, "churned": 0, "reactivated": 1},
    ]
    assert report.tables["by_status_tier"] == [
        {"status": "active", "tier": "pooled", "count": 2},
        {"status": "offboarded", "tier": "pooled", "count": 1},
        {"status": "pending_provision", "tier": "silo", "count": 1},
    ]


def test_window_excludes_other_months(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.tenants_report(s, Window.ending("2026-09", 1))
    assert report.tables["monthly"] == [
        {"month": "2026-09", "new": 1, "churned": 0, "reactivated": 0}
    ]
