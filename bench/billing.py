"""Billing run at scale: N tenants (default 100,000), each on a plan with one fixed and two
usage charges, and 10 usage events per tenant (1,000,000 by default).

In one invocation, for SQLite and PostgreSQL (skipped if unreachable):

- seed a fresh store (``seed(url, tenants, events)``; the Reports bench reuses it);
- time ``mno billing run --period 2026-10`` in a child process, and its peak RSS;
- floor: one hand-written SQL aggregation (GROUP BY tenant, metric) plus a bulk insert of
  the same number of invoices and invoice lines, in a child process, on the same store.

Goals: run <= 60 s, <= 3x the floor, peak memory <= 1 GB.
Usage: ``python bench/billing.py [--tenants N] [--events-per-tenant 10] [--only sqlite]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_SERVER = os.environ.get("MNO_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PERIOD = "2026-10"
TIMEZONES = ["UTC", "Europe/Paris", "America/New_York", "Pacific/Auckland", "Asia/Tokyo"]
PLAN = """
kind: Metric
metadata: {name: api_calls}
spec: {aggregation: sum}
---
kind: Metric
metadata: {name: storage_gb}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: bench}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "49.00", timing: advance}
    - kind: usage
      metric: api_calls
      model: graduated
      tiers:
        - {up_to: 1000, unit_price: "0"}
        - {up_to: 10000, unit_price: "0.002"}
        - {up_to: null, unit_price: "0.001"}
    - {kind: usage, metric: storage_gb, model: per_unit, unit_price: "0.10"}
---
kind: TaxRate
metadata: {name: fr-vat}
spec: {country: FR, rate: "20"}
"""


def seed(url: str, tenants: int, events_per_tenant: int = 10, batch: int = 20_000) -> None:
    """Fill an upgraded, empty store: tenants, one subscription each, usage in October."""
    import sqlalchemy as sa

    from mno.billing import documents
    from mno.store import db
    from mno.store.models.billing import Plan, Subscription, UsageEvent
    from mno.store.models.tenancy import Tenant

    db.upgrade(db.get_engine(url))
    with db.session_scope(url) as s:
        documents.apply_text(s, PLAN)
        plan_id = s.execute(sa.select(Plan.id).where(Plan.code == "bench")).scalar_one()
    now = datetime(2026, 9, 15, tzinfo=UTC)
    start = datetime(2026, 9, 1, tzinfo=UTC)
    t_ten = Tenant.__table__  # type: ignore[attr-defined]
    t_sub = Subscription.__table__  # type: ignore[attr-defined]
    t_use = UsageEvent.__table__  # type: ignore[attr-defined]
    engine = db.get_engine(url)
    for lo in range(0, tenants, batch):
        hi = min(lo + batch, tenants)
        ids = [uuid.uuid4() for _ in range(lo, hi)]
        with engine.begin() as c:
            c.execute(
                t_ten.insert(),
                [
                    {
                        "id": tid,
                        "created_at": now,
                        "updated_at": now,
                        "key": f"t{n:07d}",
                        "name": f"Tenant {n}",
                        "tier": "pooled",
                        "status": "active",
                        "currency": "EUR",
                        "timezone": TIMEZONES[n % len(TIMEZONES)],
                        "in_arrears": False,
                        "country": "FR" if n % 2 else "US",
                        "metadata": {},
                        "resources": {},
                    }
                    for n, tid in zip(range(lo, hi), ids, strict=True)
                ],
            )
            c.execute(
                t_sub.insert(),
                [
                    {
                        "id": uuid.uuid4(),
                        "created_at": now,
                        "updated_at": now,
                        "tenant_id": tid,
                        "plan_id": plan_id,
                        "plan_code": "bench",
                        "status": "active",
                        "started_at": start,
                        "periods_billed": 0,
                    }
                    for tid in ids
                ],
            )
            rows = []
            for n, tid in zip(range(lo, hi), ids, strict=True):
                for k in range(events_per_tenant):
                    rows.append(
                        {
                            "id": uuid.uuid4(),
                            "created_at": now,
                            "updated_at": now,
                            "tenant_id": tid,
                            "metric_code": "api_calls" if k % 2 else "storage_gb",
                            "quantity": (n * 7 + k * 311) % 3000,
                            "at": datetime(2026, 10, 2, tzinfo=UTC) + timedelta(hours=k * 60),
                            "properties": {},
                        }
                    )
            c.execute(t_use.insert(), rows)


def floor(url: str) -> dict[str, float]:
    """One SQL aggregation and a bulk insert of the same invoices and lines (no rating)."""
    import sqlalchemy as sa

    from mno.store import db
    from mno.store.models.billing import Invoice, InvoiceLine, UsageEvent

    engine = db.get_engine(url)
    t0 = time.perf_counter()
    t_use = UsageEvent.__table__  # type: ignore[attr-defined]
    with engine.begin() as c:
        agg = c.execute(
            sa.select(t_use.c.tenant_id, t_use.c.metric_code, sa.func.sum(t_use.c.quantity))
            .where(
                t_use.c.at >= datetime(2026, 9, 30, tzinfo=UTC),
                t_use.c.at < datetime(2026, 11, 2, tzinfo=UTC),
            )
            .group_by(t_use.c.tenant_id, t_use.c.metric_code)
        ).all()
        tenants = sorted({r[0] for r in agg})
        now = datetime.now(UTC)
        inv_ids = {}
        invs = []
        for tid in tenants:
            inv_ids[tid] = uuid.uuid4()
            invs.append(
                {
                    "id": inv_ids[tid],
                    "created_at": now,
                    "updated_at": now,
                    "tenant_id": tid,
                    "period": "floor",
                    "kind": "floor",
                    "issuer": "x",
                    "status": "draft",
                    "currency": "EUR",
                    "subtotal_minor": 1,
                    "discount_minor": 0,
                    "tax_minor": 0,
                    "credit_minor": 0,
                    "total_minor": 1,
                    "paid_minor": 0,
                    "tax_detail": {},
                }
            )
        lines = []
        for tid in tenants:
            lines.append(
                {
                    "id": uuid.uuid4(),
                    "created_at": now,
                    "updated_at": now,
                    "invoice_id": inv_ids[tid],
                    "line_key": f"floor|{tid}|fixed",
                    "charge_ref": "0",
                    "kind": "fixed",
                    "amount_minor": 4900,
                    "detail": {},
                }
            )
        for tid, metric, qty in agg:
            lines.append(
                {
                    "id": uuid.uuid4(),
                    "created_at": now,
                    "updated_at": now,
                    "invoice_id": inv_ids[tid],
                    "line_key": f"floor|{tid}|{metric}",
                    "charge_ref": metric,
                    "kind": "usage",
                    "quantity": str(qty),
                    "amount_minor": 1,
                    "detail": {},
                }
            )
        for i in range(0, len(invs), 5000):
            c.execute(Invoice.__table__.insert(), invs[i : i + 5000])  # type: ignore[attr-defined]
        for i in range(0, len(lines), 5000):
            c.execute(InvoiceLine.__table__.insert(), lines[i : i + 5000])  # type: ignore[attr-defined]
        c.rollback()
    return {"seconds": time.perf_counter() - t0, "invoices": len(invs), "lines": len(lines)}


def child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a child; (seconds, peak RSS MiB of that child, stdout)."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if out.returncode:
        raise SystemExit(f"{cmd} failed: {out.stderr.strip()[-2000:]}")
    # ru_maxrss for children is the max over all children so far: report it with that caveat
    return seconds, max(peak, before) / 1024, out.stdout


def one_store(name: str, url: str, tenants: int, per: int) -> None:
    env = {**os.environ, "MNO_DB_URL": url, "NO_COLOR": "1"}
    t0 = time.perf_counter()
    seed(url, tenants, per)
    print(
        f"[{name}] seeded {tenants:,} tenants, {tenants * per:,} usage events "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    f_s, f_rss, f_out = child([sys.executable, __file__, "--floor-only", url], env)
    fl = json.loads(f_out)
    print(
        f"[{name}] floor: {fl['seconds']:.2f} s (aggregation + bulk insert of "
        f"{fl['invoices']:,} invoices, {fl['lines']:,} lines; child total {f_s:.2f} s)",
        flush=True,
    )
    r_s, r_rss, r_out = child(
        [sys.executable, "-m", "mno", "billing", "run", "--period", PERIOD, "-o", "json"], env
    )
    res = json.loads(r_out)
    print(
        f"[{name}] mno billing run: {r_s:.2f} s wall (in-run {res['duration_s']:.2f} s), "
        f"{res['tenants']:,} tenants, {res['invoices']:,} invoices, totals {res['totals']}, "
        f"errors {len(res['errors'])}",
        flush=True,
    )
    print(f"[{name}] peak RSS (max over children so far): {r_rss:.0f} MiB", flush=True)
    print(
        f"[{name}] ratio run/floor: {r_s / f_s:.2f}x (child wall vs child wall; in-process "
        f"{res['duration_s'] / fl['seconds']:.2f}x); goals: <= 60 s, <= 3x, <= 1024 MiB",
        flush=True,
    )
    r2_s, _, r2_out = child(
        [sys.executable, "-m", "mno", "billing", "run", "--period", PERIOD, "-o", "json"], env
    )
    print(
        f"[{name}] rerun: {r2_s:.2f} s, {json.loads(r2_out)['invoices']} new invoices", flush=True
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tenants", type=int, default=100_000)
    p.add_argument("--events-per-tenant", type=int, default=10)
    p.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    p.add_argument("--floor-only", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.floor_only:
        print(json.dumps(floor(a.floor_only)))
        return
    print(
        f"billing bench: {a.tenants:,} tenants x (1 fixed + 2 usage charges), "
        f"{a.tenants * a.events_per_tenant:,} usage events, period {PERIOD}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MNO_HOME"] = tmp
        if a.only in (None, "sqlite"):
            one_store("sqlite", f"sqlite:///{tmp}/bench.db", a.tenants, a.events_per_tenant)
        if a.only in (None, "postgres"):
            import sqlalchemy as sa

            name = f"mno_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as c:
                    c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            except Exception as exc:  # noqa: BLE001
                print(f"[postgres] skipped: {exc}")
                return
            url = (
                sa.engine.make_url(PG_SERVER)
                .set(database=name)
                .render_as_string(hide_password=False)
            )
            try:
                one_store("postgres", url, a.tenants, a.events_per_tenant)
            finally:
                from mno.store import db

                db.dispose_all()
                with admin.connect() as c:
                    c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
