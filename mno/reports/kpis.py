"""KPI queries, one function per area. Every aggregation runs in the database."""

from __future__ import annotations

from collections.abc import Callable
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


AREAS: dict[str, Callable[[Session, Window], Report]] = {
    "tenants": tenants_report,
}


def report(session: Session, area: str, window: Window) -> Report:
    from mno.errors import BadInput

    if area not in AREAS:
        raise BadInput(f"unknown report {area!r}", f"one of: {', '.join(AREAS)}")
    return AREAS[area](session, window)


def summary(session: Session, window: Window) -> list[Report]:
    return [fn(session, window) for fn in AREAS.values()]
