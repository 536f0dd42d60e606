"""Nex KPIs: hosted app instances by status and host, provisioning time, failures per app.

An instance's history is its audit trail: the provisioner writes one ``instance.status``
row per status change (``diff.after.status`` is the new status, ``target_id`` the
instance id). Provisioning time is the time from the instance's creation (the request) to
its first ``running`` status, so it includes queueing, image pulls and any failed attempts
before the first success. An instance counts in the month in which it first ran. Failures
are changes to ``failed`` in the window, by the app of the instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from mno.reports import sql
from mno.reports.model import Report, Series, Window, fill
from mno.reports.tables import app, audit_entry, instance

if TYPE_CHECKING:
    from sqlmodel import Session

STATUS_ACTION = "instance.status"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class _History(NamedTuple):
    """Expressions over the instances' audit trail, shared by the report's queries."""

    changes: Any  # the audit rows of instance status changes
    to_status: Any  # the status a change went to
    iid: Any  # the instance id as the audit trail writes it
    ran: Any  # instances joined to their first run (``first_run.at``)
    ran_in_window: Any  # the first run falls in the window
    seconds: Any  # from creation to the first run
    month_of_run: Any


def instances_report(session: Session, window: Window) -> Report:
    dialect = sql.dialect_of(session)
    inst = instance
    live = inst.c.status != "terminated"

    by_status = {
        status: int(n)
        for status, n in session.execute(
            sa.select(inst.c.status, sa.func.count()).group_by(inst.c.status)
        )
    }
    by_host = _by_host(session, live)
    history = _history(window, dialect)
    overall, per_month, provisioned = _provisioning(session, history)
    failures = sql.monthly_counts(
        session, audit_entry.c.at, window, history.changes, history.to_status == "failed"
    )
    failures_by_app = _failures_by_app(session, window, history)

    live_total = sum(n for s, n in by_status.items() if s != "terminated")
    p95_by_month = {m: _round(v.get(95)) for m, v in per_month.items()}
    months = window.month_keys()
    return Report(
        area="instances",
        title="Nex instances",
        window=window,
        metrics={
            "live": live_total,
            "running": by_status.get("running", 0),
            "failed_now": by_status.get("failed", 0),
            "hosts": sum(1 for row in by_host if row["host"] != "-"),
            "provisioned_in_window": sum(provisioned.values()),
            "provisioning_s_p50": _round(overall[50]),
            "provisioning_s_p95": _round(overall[95]),
            "failures_in_window": sum(failures.values()),
        },
        tables={
            "by_status": [{"status": k, "count": v} for k, v in sorted(by_status.items())],
            "by_host": by_host,
            "failures_by_app": failures_by_app,
            "monthly": [
                {
                    "month": m,
                    "provisioned": provisioned.get(m, 0),
                    "provisioning_s_p50": _round(per_month.get(m, {}).get(50)),
                    "provisioning_s_p95": p95_by_month.get(m),
                    "failures": failures.get(m, 0),
                }
                for m in months
            ],
        },
        series=[
            Series("instances provisioned", "instances", fill(window, provisioned)),
            Series("provisioning time p95", "seconds", fill(window, _none_to_zero(p95_by_month))),
            Series("instance failures", "failures", fill(window, failures)),
        ],
    )


def _by_host(session: Session, live: Any) -> list[dict[str, Any]]:
    """Live instances per host (running and failed among them); unplaced ones last."""
    inst = instance
    host = sa.func.coalesce(inst.c.host, "-").label("host")
    by_host = [
        {"host": h, "instances": int(n), "running": int(run), "failed": int(bad)}
        for h, n, run, bad in session.execute(
            sa.select(
                host,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((inst.c.status == "running", 1), else_=0)), 0),
                sa.func.coalesce(sa.func.sum(sa.case((inst.c.status == "failed", 1), else_=0)), 0),
            )
            .where(live)
            .group_by(host)
        )
    ]
    by_host.sort(key=lambda row: (row["host"] == "-", row["host"]))
    return by_host


def _history(window: Window, dialect: str) -> _History:
    inst = instance
    a = audit_entry
    to_status = a.c.diff[("after", "status")].as_string()
    changes = sa.and_(a.c.action == STATUS_ACTION, a.c.target_type == "instance")
    first_run = (
        sa.select(a.c.target_id.label("iid"), sa.func.min(a.c.at).label("at"))
        .where(changes, to_status == "running")
        .group_by(a.c.target_id)
        .subquery()
    )
    iid = sql.uuid_text(inst.c.id, dialect)
    return _History(
        changes=changes,
        to_status=to_status,
        iid=iid,
        ran=inst.join(first_run, first_run.c.iid == iid),
        ran_in_window=sa.and_(first_run.c.at >= window.start, first_run.c.at < window.stop),
        seconds=sql.seconds_between(inst.c.created_at, first_run.c.at, dialect),
        month_of_run=sql.month(first_run.c.at, dialect),
    )


def _provisioning(
    session: Session, h: _History
) -> tuple[dict[int, float | None], dict[Any, dict[int, float | None]], dict[str, int]]:
    """Provisioning time percentiles (overall and per month) and instances first run."""
    overall = sql.percentiles(
        session, sa.select(h.seconds.label("v")).select_from(h.ran).where(h.ran_in_window)
    )
    per_month = sql.percentiles_by(
        session,
        sa.select(h.month_of_run.label("g"), h.seconds.label("v"))
        .select_from(h.ran)
        .where(h.ran_in_window),
    )
    provisioned = {
        m: int(n)
        for m, n in session.execute(
            sa.select(h.month_of_run.label("m"), sa.func.count())
            .select_from(h.ran)
            .where(h.ran_in_window)
            .group_by(h.month_of_run)
        )
    }
    return overall, per_month, provisioned


def _failures_by_app(session: Session, window: Window, h: _History) -> list[dict[str, Any]]:
    """Per app: failures in the window, instances failed now, instances first run."""
    inst = instance
    a = audit_entry
    failed_in_window = sa.and_(
        h.changes, h.to_status == "failed", a.c.at >= window.start, a.c.at < window.stop
    )
    fails = (
        sa.select(
            inst.c.app_id.label("app_id"),
            sa.func.count().label("failures"),
            sa.func.count(sa.distinct(inst.c.id)).label("instances"),
        )
        .select_from(inst.join(a, a.c.target_id == h.iid))
        .where(failed_in_window)
        .group_by(inst.c.app_id)
        .subquery()
    )
    runs = (
        sa.select(inst.c.app_id.label("app_id"), sa.func.count().label("n"))
        .select_from(h.ran)
        .where(h.ran_in_window)
        .group_by(inst.c.app_id)
        .subquery()
    )
    now_failed = (
        sa.select(inst.c.app_id.label("app_id"), sa.func.count().label("n"))
        .where(inst.c.status == "failed")
        .group_by(inst.c.app_id)
        .subquery()
    )
    return [
        {
            "app": code,
            "failures": int(n_fail or 0),
            "instances_failed": int(n_inst or 0),
            "failed_now": int(n_now or 0),
            "provisioned": int(n_ran or 0),
        }
        for code, n_fail, n_inst, n_now, n_ran in session.execute(
            sa.select(app.c.code, fails.c.failures, fails.c.instances, now_failed.c.n, runs.c.n)
            .select_from(
                app.outerjoin(fails, fails.c.app_id == app.c.id)
                .outerjoin(now_failed, now_failed.c.app_id == app.c.id)
                .outerjoin(runs, runs.c.app_id == app.c.id)
            )
            .where(
                sa.or_(
                    fails.c.failures.is_not(None),
                    now_failed.c.n.is_not(None),
                    runs.c.n.is_not(None),
                )
            )
            .order_by(app.c.code)
        )
    ]


def _none_to_zero(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (0 if v is None else v) for k, v in values.items()}
