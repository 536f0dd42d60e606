"""KPI queries, one function per area. Every aggregation runs in the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno.reports import sql
from mno.reports.model import Report, Series, Window, fill

if TYPE_CHECKING:
    from sqlmodel import Session


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _monthly_counts(session: Session, ts_col: Any, window: Window, *where: Any) -> dict[str, int]:
    m = sql.month(ts_col, _dialect(session)).label("m")
    stmt = (
        sa.select(m, sa.func.count())
        .where(ts_col >= window.start, ts_col < window.stop, *where)
        .group_by(m)
    )
    return {row[0]: int(row[1]) for row in session.execute(stmt)}


# -- tenants ----------------------------------------------------------------------------


def tenants_report(session: Session, window: Window) -> Report:
    from mno.store.models.tenancy import Tenant, TenantStatusChange
    from mno.tenancy.tenants import SYSTEM_KEY

    t = Tenant.__table__
    not_system = t.c.key != SYSTEM_KEY
    by_status_tier = [
        {"status": status, "tier": tier, "count": int(n)}
        for status, tier, n in session.execute(
            sa.select(t.c.status, t.c.tier, sa.func.count())
            .where(not_system)
            .group_by(t.c.status, t.c.tier)
            .order_by(t.c.status, t.c.tier)
        )
    ]
    totals = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((t.c.status == "active", 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((t.c.in_arrears.is_(True), 1), else_=0)), 0),
        ).where(not_system)
    ).one()
    c = TenantStatusChange.__table__
    new = _monthly_counts(session, t.c.created_at, window, not_system)
    churned = _monthly_counts(session, c.c.at, window, c.c.to_status == "offboarded")
    reactivated = _monthly_counts(
        session, c.c.at, window, c.c.from_status == "suspended", c.c.to_status == "active"
    )
    months = window.month_keys()
    return Report(
        area="tenants",
        title="Tenants",
        window=window,
        metrics={
            "total": int(totals[0]),
            "active": int(totals[1]),
            "in_arrears": int(totals[2]),
            "new_in_window": sum(new.values()),
            "churned_in_window": sum(churned.values()),
            "reactivated_in_window": sum(reactivated.values()),
        },
        tables={
            "by_status_tier": by_status_tier,
            "monthly": [
                {
                    "month": m,
                    "new": new.get(m, 0),
                    "churned": churned.get(m, 0),
                    "reactivated": reactivated.get(m, 0),
                }
                for m in months
            ],
        },
        series=[
            Series("new tenants", "tenants", fill(window, new)),
            Series("churned tenants", "tenants", fill(window, churned)),
            Series("reactivated tenants", "tenants", fill(window, reactivated)),
        ],
    )


# -- sync -------------------------------------------------------------------------------

RECOVERY_FAILURES = 3


def sync_report(session: Session, window: Window) -> Report:
    from mno.store.models.sync import SyncChange, SyncConflict, SyncConnection, SyncRun
    from mno.store.models.tenancy import Tenant

    dialect = _dialect(session)
    c = SyncConnection.__table__
    r = SyncRun.__table__
    last_ok = (
        sa.select(r.c.connection_id, sa.func.max(r.c.finished_at).label("at"))
        .where(r.c.status == "success")
        .group_by(r.c.connection_id)
        .subquery()
    )
    health = sa.case(
        (c.c.paused.is_(True), "paused"),
        (c.c.consecutive_failures >= RECOVERY_FAILURES, "recovery"),
        (c.c.consecutive_failures > 0, "failing"),
        (last_ok.c.at.is_(None), "never_synced"),
        else_="healthy",
    ).label("health")
    t = Tenant.__table__
    as_of = window.as_of
    age = sql.seconds_between(last_ok.c.at, sa.literal(as_of, type_=c.c.created_at.type), dialect)
    rows = session.execute(
        sa.select(c.c.name, t.c.key, health, last_ok.c.at, age.label("age"))
        .select_from(
            c.join(t, t.c.id == c.c.tenant_id).outerjoin(last_ok, last_ok.c.connection_id == c.c.id)
        )
        .order_by(c.c.name)
    ).all()
    by_health: dict[str, int] = {}
    for row in rows:
        by_health[row.health] = by_health.get(row.health, 0) + 1
    connections = [
        {
            "connection": row.name,
            "tenant": row.key,
            "health": row.health,
            "last_success": row.at,
            "last_success_age_h": round(float(row.age) / 3600, 1) if row.age is not None else None,
        }
        for row in rows
    ]
    ch = SyncChange.__table__
    changes = _monthly_counts(session, ch.c.created_at, window)
    d = sql.day(ch.c.created_at, dialect).label("d")
    recent_start = max(window.start, as_of - timedelta(days=30))
    per_day = [
        {"day": day_key, "changes": int(n)}
        for day_key, n in session.execute(
            sa.select(d, sa.func.count())
            .where(ch.c.created_at >= recent_start, ch.c.created_at < window.stop)
            .group_by(d)
            .order_by(d)
        )
    ]
    cf = SyncConflict.__table__
    conflicts = _monthly_counts(session, cf.c.created_at, window)
    ages = [row.age for row in rows if row.age is not None]
    return Report(
        area="sync",
        title="Sync",
        window=window,
        metrics={
            "connections": len(rows),
            "by_health": dict(sorted(by_health.items())),
            "oldest_last_success_h": round(max(ages) / 3600, 1) if ages else None,
            "changes_in_window": sum(changes.values()),
            "conflicts_in_window": sum(conflicts.values()),
        },
        tables={
            "connections": connections,
            "changes_per_day": per_day,
            "monthly": [
                {"month": m, "changes": changes.get(m, 0), "conflicts": conflicts.get(m, 0)}
                for m in window.month_keys()
            ],
        },
        series=[
            Series("records changed", "records", fill(window, changes)),
            Series("sync conflicts", "conflicts", fill(window, conflicts)),
        ],
    )


# -- webhooks ---------------------------------------------------------------------------


def webhooks_report(session: Session, window: Window) -> Report:
    from mno.store.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

    dialect = _dialect(session)
    d = WebhookDelivery.__table__
    a = WebhookAttempt.__table__
    e = WebhookEndpoint.__table__
    in_window = sa.and_(
        d.c.channel == "webhook", d.c.created_at >= window.start, d.c.created_at < window.stop
    )
    by_status = {
        status: int(n)
        for status, n in session.execute(
            sa.select(d.c.status, sa.func.count()).where(in_window).group_by(d.c.status)
        )
    }
    finished = by_status.get("succeeded", 0) + by_status.get("exhausted", 0)
    attempts = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(
                sa.func.sum(sa.case((a.c.status_code.between(200, 299), 1), else_=0)), 0
            ),
        ).where(a.c.at >= window.start, a.c.at < window.stop)
    ).one()
    attempt_latency = sql.percentiles(
        session,
        sa.select(a.c.latency_ms.label("v")).where(a.c.at >= window.start, a.c.at < window.stop),
    )
    delivery_latency = sql.percentiles(
        session,
        sa.select(sql.seconds_between(d.c.event_at, d.c.done_at, dialect).label("v")).where(
            in_window, d.c.status == "succeeded", d.c.done_at.is_not(None)
        ),
    )
    disabled = session.execute(
        sa.select(sa.func.count()).select_from(e).where(e.c.enabled.is_(False))
    ).scalar_one()
    endpoints = session.execute(sa.select(sa.func.count()).select_from(e)).scalar_one()
    m = sql.month(d.c.created_at, dialect).label("m")
    monthly: dict[str, dict[str, int]] = {}
    for month, status, n in session.execute(
        sa.select(m, d.c.status, sa.func.count()).where(in_window).group_by(m, d.c.status)
    ):
        monthly.setdefault(month, {})[status] = int(n)
    succeeded = {k: v.get("succeeded", 0) for k, v in monthly.items()}
    exhausted = {k: v.get("exhausted", 0) for k, v in monthly.items()}

    def pct(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return Report(
        area="webhooks",
        title="Webhooks",
        window=window,
        metrics={
            "deliveries": sum(by_status.values()),
            "success_rate_pct": round(by_status.get("succeeded", 0) / finished * 100, 2)
            if finished
            else None,
            "attempt_success_pct": round(int(attempts[1]) / int(attempts[0]) * 100, 2)
            if attempts[0]
            else None,
            "attempt_latency_ms_p50": pct(attempt_latency[50]),
            "attempt_latency_ms_p95": pct(attempt_latency[95]),
            "delivery_latency_s_p50": pct(delivery_latency[50]),
            "delivery_latency_s_p95": pct(delivery_latency[95]),
            "exhausted": by_status.get("exhausted", 0),
            "pending": by_status.get("pending", 0),
            "endpoints": int(endpoints),
            "disabled_endpoints": int(disabled),
        },
        tables={
            "by_status": [{"status": k, "count": v} for k, v in sorted(by_status.items())],
            "monthly": [
                {"month": k, "succeeded": succeeded.get(k, 0), "exhausted": exhausted.get(k, 0)}
                for k in window.month_keys()
            ],
        },
        series=[
            Series("deliveries succeeded", "deliveries", fill(window, succeeded)),
            Series("deliveries exhausted", "deliveries", fill(window, exhausted)),
        ],
    )


AREAS: dict[str, Callable[[Session, Window], Report]] = {
    "tenants": tenants_report,
    "webhooks": webhooks_report,
    "sync": sync_report,
}


def report(session: Session, area: str, window: Window) -> Report:
    from mno.errors import BadInput

    if area not in AREAS:
        raise BadInput(f"unknown report {area!r}", f"one of: {', '.join(AREAS)}")
    return AREAS[area](session, window)


def summary(session: Session, window: Window) -> list[Report]:
    return [fn(session, window) for fn in AREAS.values()]
