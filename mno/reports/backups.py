"""Nex backups: the last successful restic backup of each instance, and the overdue ones.

An instance is overdue when its last success (or its creation, if it never had one) is
older than its schedule (``every`` of its app, tier or the platform) plus
``backups.grace``. Instances with no schedule are listed without being overdue. The
report is a point-in-time view: the window's months do not change it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mno.reports.model import Report, Window

if TYPE_CHECKING:
    from sqlmodel import Session

COLUMNS = ("instance", "tenant", "app", "every", "last_success", "snapshot", "next_due")


def backups_report(session: Session, window: Window) -> Report:
    from mno.nex import offsite_backups

    data = offsite_backups.overview(session)
    report = Report("backups", "Backups", window)
    if not data["configured"]:
        report.available = False
        report.note = "No backup repository (backups.repository in the platform YAML)."
    rows = data["instances"]
    report.metrics = {
        "instances": len(rows),
        "scheduled": data["scheduled"],
        "backed_up": sum(1 for r in rows if r["last_success"]),
        "overdue": len(data["overdue"]),
    }
    report.tables = {
        "overdue": [{k: r[k] for k in (*COLUMNS, "last_error")} for r in data["overdue"]],
        "last_backup": [{k: r[k] for k in COLUMNS} for r in rows],
    }
    return report
