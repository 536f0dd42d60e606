"""Nex KPIs against values computed by hand, on SQLite and PostgreSQL.

Instances and their status histories (audit rows) are written straight into the store, as
the provisioner leaves them; one history is written by the provisioner's own recorder.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from mno import clock
from mno.nex import status as instance_status
from mno.reports import kpis
from mno.reports.model import Window
from mno.store.models.core import AuditEntry
from mno.store.models.nex import Instance
from mno.tenancy import apps, tenants


def _at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


# name, app, host, created, [(seconds after creation, new status)], current status
HISTORIES = [
    ("b1", "blog", "h1", _at(11, 1), [(5, "provisioning"), (60, "running")], "running"),
    (
        "b2",
        "blog",
        "h1",
        _at(11, 2),
        # stopped and started again: only the first run counts (120 s)
        [(120, "running"), (3600, "stopping"), (3700, "stopped"), (7200, "running")],
        "running",
    ),
    ("b3", "blog", "h2", _at(11, 3), [(30, "failed"), (300, "running")], "running"),
    (
        "b4",
        "blog",
        "h2",
        _at(11, 4),
        [(10, "failed"), (50, "provisioning"), (100, "failed")],
        "failed",
    ),
    ("s1", "shop", "h2", _at(11, 5), [(90, "running")], "running"),
    ("s2", "shop", None, _at(11, 20), [], "staged"),
    # first ran in October; failed and recovered in November
    (
        "s3",
        "shop",
        "h1",
        _at(10, 1),
        [(200, "running"), (40 * 86400, "failed"), (40 * 86400 + 60, "running")],
        "running",
    ),
    (
        "s4",
        "shop",
        "h1",
        _at(10, 2),
        [(400, "running"), (18 * 86400, "terminating"), (18 * 86400 + 30, "terminated")],
        "terminated",
    ),
]


def seed(session) -> None:
    clock.set_now(_at(10, 1, 9))
    with session() as s:
        tenant, _ = tenants.create(s, "nexco")
        blog, _ = apps.create(s, "Blog", stack="nex", image="blog:1", port=80)
        shop, _ = apps.create(s, "Shop", stack="nex", image="shop:1", port=80)
        apps.create(s, "Wiki", stack="nex", image="wiki:1", port=80)  # no instances
        app_ids = {"blog": blog.id, "shop": shop.id}
        for name, app, host, created, history, status in HISTORIES:
            inst = Instance(
                name=name,
                live_name=name if status != "terminated" else None,
                tenant_id=tenant.id,
                app_id=app_ids[app],
                status=status,
                host=host,
                image=f"{app}:1",
                port=80,
                url=f"http://{name}.apps.example.com",
                created_at=created,
                updated_at=created,
            )
            s.add(inst)
            s.flush()
            before = "staged"
            for after_s, new in history:
                s.add(
                    AuditEntry(
                        at=created + timedelta(seconds=after_s),
                        actor="provisioner",
                        action="instance.status",
                        target_type="instance",
                        target_id=str(inst.id),
                        target=name,
                        tenant_id=tenant.id,
                        diff={"before": {"status": before}, "after": {"status": new}},
                    )
                )
                before = new
        # rows that are not status changes of instances must not count
        s.add(
            AuditEntry(
                at=_at(11, 6),
                actor="ops",
                action="instance.update",
                target_type="instance",
                target_id=str(inst.id),
                target="s4",
                diff={"before": {"status": "x"}, "after": {"status": "failed"}},
            )
        )
    # s5 goes through the provisioner's own recorder: created Nov 6, running 45 s later
    clock.set_now(_at(11, 6))
    with session() as s:
        s5 = Instance(
            name="s5",
            live_name="s5",
            tenant_id=tenant.id,
            app_id=shop.id,
            host="h1",
            image="shop:1",
            port=80,
            url="http://s5.apps.example.com",
        )
        s.add(s5)
    clock.set_now(_at(11, 6) + timedelta(seconds=45))
    with session() as s:
        instance_status.apply(s, s.get(Instance, s5.id), "running")
    clock.set_now(_at(11, 30))


def test_instance_kpis_by_hand(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.report(s, "instances", Window.ending("2026-11", 1))
    # November's first runs: b1 60 s, b2 120 s, b3 300 s, s1 90 s, s5 45 s
    # sorted 45, 60, 90, 120, 300: nearest rank p50 = 3rd, p95 = 5th
    assert report.metrics == {
        "live": 8,
        "running": 6,
        "failed_now": 1,
        "hosts": 2,
        "provisioned_in_window": 5,
        "provisioning_s_p50": 90.0,
        "provisioning_s_p95": 300.0,
        "failures_in_window": 4,  # b3 once, b4 twice, s3 once
    }
    assert report.tables["by_status"] == [
        {"status": "failed", "count": 1},
        {"status": "running", "count": 6},
        {"status": "staged", "count": 1},
        {"status": "terminated", "count": 1},
    ]
    assert report.tables["by_host"] == [
        {"host": "h1", "instances": 4, "running": 4, "failed": 0},  # b1 b2 s3 s5
        {"host": "h2", "instances": 3, "running": 2, "failed": 1},  # b3 b4 s1
        {"host": "-", "instances": 1, "running": 0, "failed": 0},  # s2, not placed yet
    ]
    assert report.tables["failures_by_app"] == [
        {"app": "blog", "failures": 3, "instances_failed": 2, "failed_now": 1, "provisioned": 3},
        {"app": "shop", "failures": 1, "instances_failed": 1, "failed_now": 0, "provisioned": 2},
    ]


def test_instance_kpis_by_month(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.report(s, "instances", Window.ending("2026-11", 2))
    # October: s3 200 s, s4 400 s; with November: 45 60 90 120 200 300 400 → 4th and 7th
    assert report.metrics["provisioned_in_window"] == 7
    assert (report.metrics["provisioning_s_p50"], report.metrics["provisioning_s_p95"]) == (
        120.0,
        400.0,
    )
    assert report.tables["monthly"] == [
        {
            "month": "2026-10",
            "provisioned": 2,
            "provisioning_s_p50": 200.0,
            "provisioning_s_p95": 400.0,
            "failures": 0,
        },
        {
            "month": "2026-11",
            "provisioned": 5,
            "provisioning_s_p50": 90.0,
            "provisioning_s_p95": 300.0,
            "failures": 4,
        },
    ]
    assert [s.unit for s in report.series] == ["instances", "seconds", "failures"]
    assert report.series[1].points == [("2026-10", 400.0), ("2026-11", 300.0)]
    with session(write=False) as s:
        september = kpis.report(s, "instances", Window.ending("2026-09", 1))
    assert september.metrics["provisioned_in_window"] == 0
    assert september.metrics["provisioning_s_p50"] is None
    assert september.tables["failures_by_app"] == [
        {"app": "blog", "failures": 0, "instances_failed": 0, "failed_now": 1, "provisioned": 0}
    ]


def test_instance_report_commands(cli, session):
    seed(session)
    data = cli.json("report", "instances", "--period", "2026-11", "--months", "1")
    assert data["area"] == "instances"
    assert data["metrics"]["provisioning_s_p95"] == 300.0
    result = cli("report", "instances", "--period", "2026-11", "-o", "csv", "--table", "by_host")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["host"], r["instances"]) for r in rows] == [("h1", "4"), ("h2", "3"), ("-", "1")]
    summary = cli.json("report", "summary", "--period", "2026-11", "--months", "1")
    areas = [r["area"] for r in summary["reports"]]
    assert areas == [
        "revenue",
        "tenants",
        "invoices",
        "instances",
        "backups",
        "webhooks",
        "sync",
    ]
    table = cli("report", "summary", "--period", "2026-11", "--months", "1")
    assert table.exit_code == 0, table.stderr
    assert "Nex instances" in table.stdout and "provisioning s p95" in table.stdout


def test_instance_panel_in_html(cli, session, tmp_path):
    seed(session)
    out = tmp_path / "report.html"
    result = cli("report", "html", "--out", str(out), "--period", "2026-11", "--months", "2")
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    section = page[page.index('<section id="instances">') :]
    section = section[: section.index("</section>")]
    # three charts with axis labels and units; the p95 series in seconds
    assert section.count("<svg") == 3
    assert section.count("Month (YY/MM)") == 3
    assert ">seconds</text>" in section and ">instances</text>" in section
    assert "2026-11: 300.00 seconds" in section
    assert "failures by app" in section and "<td>blog</td>" in section
