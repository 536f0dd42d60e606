"""Reports at scale: ``mno report summary -o json`` over the billing bench's store.

The store is the billing bench's (``bench/billing.py``: N tenants, default 100,000, each on
a plan, with usage events) plus a year of invoices: one invoice per tenant and month for
the 12 months to 2026-10, each with a fixed and a usage line (1,200,000 invoices and
2,400,000 lines by default), written with one INSERT … SELECT per month and table. Older
invoices are paid; the last month's are open, and a tenth of the month before stay open
past their due date. The store's triggers fill the monthly revenue rollups
(``mno.reports.rollup``) as these inserts run, as they do for any invoice write, so the
bench needs no separate rebuild; a kept store from an older mno gets them (and their
backfill) from its migrations when reused.

In one invocation, for SQLite and PostgreSQL (skipped if unreachable):

- build the store, or reuse it with ``--keep DIR`` (SQLite file and PostgreSQL database
  are kept and reused when their tenant and invoice counts match);
- baseline: a child process that opens the store and runs one plain aggregation over the
  invoice table (``SELECT count(*), sum(total_minor) FROM billing_invoice``);
- time ``mno report summary -o json --period 2026-11`` in a child process (best of
  ``--runs``), and the KPI queries alone in this process;
- normalised MRR read from its rollup (``mno.reports.mrr_rollup``, what the summary
  reads) and from the join over every line it replaces, and whether both agree.

Goal: the summary takes 1 s or less on each store; the ratio to the baseline is printed.
Usage: ``python bench/reports.py [--tenants N] [--runs 3] [--only sqlite] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
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
LAST_PERIOD = "2026-10"
REPORT_PERIOD = "2026-11"  # the summary's window: the 12 months to November, when October's
# invoices are issued
MONTHS = 12
KEEP_DB = "mno_bench_reports"
BASELINE = """
import sys, time
t0 = time.perf_counter()
import sqlalchemy as sa
engine = sa.create_engine(sys.argv[1])
with engine.connect() as c:
    n, total = c.execute(sa.text("SELECT count(*), sum(total_minor) FROM billing_invoice")).one()
print(n, total, time.perf_counter() - t0)
"""


def periods(last: str = LAST_PERIOD, months: int = MONTHS) -> list[str]:
    year, month = (int(p) for p in last.split("-"))
    keys = []
    for _ in range(months):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return list(reversed(keys))


def _month_after(period: str) -> datetime:
    year, month = (int(p) for p in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def invoices(url: str, months: int = MONTHS) -> int:
    """A year of issued invoices and their lines, set-based: one INSERT … SELECT per month
    and table, ids and amounts computed by the database from each tenant's row."""
    import sqlalchemy as sa

    from mno.store import db
    from mno.store.models.billing import Invoice, InvoiceLine, Subscription
    from mno.store.models.tenancy import Tenant
    from mno.store.types import UTCDateTime
    from mno.tenancy.tenants import SYSTEM_KEY

    engine = db.get_engine(url)
    pg = engine.dialect.name == "postgresql"
    new_id = sa.literal_column("gen_random_uuid()" if pg else "lower(hex(randomblob(16)))")
    empty = sa.literal_column("'{}'::json" if pg else "'{}'")
    t = Tenant.__table__  # type: ignore[attr-defined]
    sub = Subscription.__table__  # type: ignore[attr-defined]
    inv = Invoice.__table__  # type: ignore[attr-defined]
    ln = InvoiceLine.__table__  # type: ignore[attr-defined]

    def at(value: datetime) -> sa.ColumnElement[datetime]:
        return sa.literal(value, UTCDateTime())

    last_digit = sa.func.substr(t.c.key, sa.func.length(t.c.key), 1)
    # usage: 0.00 to 9.99 EUR by tenant, plus 0.10 EUR more each month
    usage_of = sa.cast(sa.func.substr(t.c.key, sa.func.length(t.c.key) - 2, 3), sa.Integer)
    keys = periods(months=months)
    total = 0
    with engine.begin() as c:
        for k, period in enumerate(keys):
            issued = _month_after(period) + timedelta(hours=1)
            usage = usage_of + 10 * k
            subtotal = 4900 + usage
            tax = sa.case((t.c.country == "FR", (subtotal * 20 + 50) // 100), else_=0)
            if k == len(keys) - 1:
                status = sa.literal("issued")
            elif k == len(keys) - 2:
                status = sa.case((last_digit == "0", "issued"), else_="paid")
            else:
                status = sa.literal("paid")
            paid = sa.case((status == "paid", at(issued + timedelta(days=5))), else_=None)
            cols = {
                "id": new_id,
                "created_at": at(issued),
                "updated_at": at(issued),
                "tenant_id": t.c.id,
                "period": sa.literal(period),
                "kind": sa.literal("period"),
                "issuer": sa.literal("default"),
                "number": sa.literal(f"{period}-") + t.c.key,
                "status": status,
                "currency": t.c.currency,
                "subtotal_minor": subtotal,
                "discount_minor": sa.literal(0),
                "tax_minor": tax,
                "credit_minor": sa.literal(0),
                "total_minor": subtotal + tax,
                "paid_minor": sa.case((status == "paid", subtotal + tax), else_=0),
                "tax_detail": empty,
                "issued_at": at(issued),
                "due_at": at(issued + timedelta(days=30)),
                "paid_at": paid,
            }
            c.execute(
                inv.insert().from_select(
                    list(cols), sa.select(*cols.values()).where(t.c.key != SYSTEM_KEY)
                )
            )
            start = _month_after(keys[k - 1]) if k else _month_after(period) - timedelta(days=31)
            for kind, amount in (
                ("fixed", sa.literal(4900)),
                ("usage", inv.c.subtotal_minor - 4900),
            ):
                line = {
                    "id": new_id,
                    "created_at": inv.c.created_at,
                    "updated_at": inv.c.created_at,
                    "invoice_id": inv.c.id,
                    "line_key": inv.c.number + f"|{kind}",
                    "subscription_id": sub.c.id,
                    "charge_ref": sa.literal("0" if kind == "fixed" else "api_calls"),
                    "kind": sa.literal(kind),
                    "description": sa.literal(kind),
                    "period_start": at(start),
                    "period_end": at(_month_after(period)),
                    "quantity": sa.literal("1"),
                    "unit_price": sa.literal("0"),
                    "proration": sa.literal("1"),
                    "amount_minor": amount,
                    "detail": empty,
                }
                c.execute(
                    ln.insert().from_select(
                        list(line),
                        sa.select(*line.values())
                        .select_from(inv.join(sub, sub.c.tenant_id == inv.c.tenant_id))
                        .where(inv.c.issued_at == at(issued), inv.c.kind == "period"),
                    )
                )
            total += c.execute(
                sa.select(sa.func.count()).select_from(inv).where(inv.c.issued_at == at(issued))
            ).scalar_one()
    if not pg:
        with engine.connect() as c:
            c.exec_driver_sql("ANALYZE")
    else:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("VACUUM ANALYZE")
    return total


def counts(url: str) -> tuple[int, int]:
    """(tenants, invoices) already in a store, or (0, 0) if it has no tables yet."""
    import sqlalchemy as sa

    from mno.store import db

    try:
        with db.get_engine(url).connect() as c:
            n_t = c.exec_driver_sql("SELECT count(*) FROM tenant WHERE key <> 'system'")
            tenants = int(n_t.scalar_one())
            invoices_n = int(c.exec_driver_sql("SELECT count(*) FROM billing_invoice").scalar_one())
    except sa.exc.DBAPIError:
        return 0, 0
    return tenants, invoices_n


def build(name: str, url: str, tenants: int, per: int) -> None:
    from bench import billing
    from mno.store import db

    have = counts(url)
    if have == (tenants, tenants * MONTHS):
        t0 = time.perf_counter()
        db.upgrade(db.get_engine(url))  # a store kept from an older mno gets the new indexes
        print(
            f"[{name}] reusing the store: {have[0]:,} tenants, {have[1]:,} invoices "
            f"(upgraded in {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        return
    if have != (0, 0):
        raise SystemExit(f"[{name}] the kept store holds {have}; remove it to rebuild")
    t0 = time.perf_counter()
    billing.seed(url, tenants, per)
    t1 = time.perf_counter()
    print(
        f"[{name}] billing bench store: {tenants:,} tenants, {tenants * per:,} usage events "
        f"in {t1 - t0:.1f} s",
        flush=True,
    )
    n = invoices(url)
    print(
        f"[{name}] a year of invoices: {n:,} invoices, {2 * n:,} lines "
        f"({periods()[0]} to {LAST_PERIOD}) in {time.perf_counter() - t1:.1f} s",
        flush=True,
    )


def child(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"{cmd} failed: {out.stderr.strip()[-2000:]}")
    return seconds, out.stdout


def in_process(url: str) -> tuple[float, float]:
    """(plain aggregation, KPI queries of every area) in this process, warm, in seconds."""
    import sqlalchemy as sa

    from mno.reports import kpis
    from mno.reports.model import Window
    from mno.store import db

    engine = db.get_engine(url)
    t0 = time.perf_counter()
    with engine.connect() as c:
        c.execute(sa.text("SELECT count(*), sum(total_minor) FROM billing_invoice")).one()
    plain = time.perf_counter() - t0
    t1 = time.perf_counter()
    with db.session_scope(url, write=False) as s:
        kpis.summary(s, Window.ending(REPORT_PERIOD, MONTHS))
    return plain, time.perf_counter() - t1


def mrr_check(url: str) -> tuple[float, float, bool]:
    """(rollup read, join over every line, same figures) for normalised MRR, warm."""
    from mno.reports import mrr
    from mno.reports.model import Window
    from mno.store import db

    window = Window.ending(REPORT_PERIOD, MONTHS)
    with db.session_scope(url, write=False) as s:
        t0 = time.perf_counter()
        rolled = mrr.normalised(s, window)
        t1 = time.perf_counter()
        joined = mrr.normalised_from_lines(s, window)
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, rolled == joined


def one_store(name: str, url: str, tenants: int, per: int, runs: int) -> None:
    build(name, url, tenants, per)
    env = {**os.environ, "MNO_DB_URL": url, "NO_COLOR": "1"}
    base: list[float] = []
    summ: list[float] = []
    out = ""
    for _ in range(runs):
        b_s, _ = child([sys.executable, "-c", BASELINE, url], env)
        base.append(b_s)
        s_s, out = child(
            [
                sys.executable,
                "-m",
                "mno",
                "report",
                "summary",
                "-o",
                "json",
                "--period",
                REPORT_PERIOD,
            ],
            env,
        )
        summ.append(s_s)
    data = json.loads(out)
    by_area = {r["area"]: r for r in data["reports"]}
    rev = by_area["revenue"]["metrics"]
    inv = by_area["invoices"]["metrics"]
    print(
        f"[{name}] summary: revenue in window {rev.get('revenue_in_window')}, mrr "
        f"{rev.get('mrr')}, outstanding {inv['outstanding_count']:,} invoices "
        f"({inv['overdue_count']:,} overdue)",
        flush=True,
    )
    print(
        f"[{name}] baseline (child: start, connect, count/sum over billing_invoice): "
        f"best {min(base):.2f} s of {', '.join(f'{x:.2f}' for x in base)}",
        flush=True,
    )
    print(
        f"[{name}] mno report summary -o json: best {min(summ):.2f} s of "
        f"{', '.join(f'{x:.2f}' for x in summ)}; ratio to baseline {min(summ) / min(base):.2f}x; "
        f"goal <= 1 s",
        flush=True,
    )
    plain, kpi = in_process(url)
    print(
        f"[{name}] in process: KPI queries of every area {kpi:.2f} s, plain count/sum "
        f"{plain:.3f} s, ratio {kpi / plain:.1f}x",
        flush=True,
    )
    rolled, joined, same = mrr_check(url)
    print(
        f"[{name}] normalised MRR: from the rollup {rolled:.3f} s, from every line (the "
        f"join it replaces) {joined:.2f} s; same figures: {same}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tenants", type=int, default=100_000)
    p.add_argument("--events-per-tenant", type=int, default=10)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    p.add_argument(
        "--keep", type=Path, default=None, help="keep and reuse the stores (SQLite file here)"
    )
    a = p.parse_args()
    print(
        f"reports bench: {a.tenants:,} tenants, {MONTHS} months of invoices to {LAST_PERIOD}, "
        f"summary window of {MONTHS} months to {REPORT_PERIOD}; load "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MNO_HOME"] = tmp
        folder = a.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if a.only in (None, "sqlite"):
            path = folder / f"reports-{a.tenants}.db"
            one_store("sqlite", f"sqlite:///{path}", a.tenants, a.events_per_tenant, a.runs)
        if a.only in (None, "postgres"):
            import sqlalchemy as sa

            name = f"{KEEP_DB}_{a.tenants}" if a.keep else f"mno_bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as c:
                    exists = c.exec_driver_sql(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                    ).first()
                    if not exists:
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
                one_store("postgres", url, a.tenants, a.events_per_tenant, a.runs)
            finally:
                from mno.store import db

                db.dispose_all()
                if not a.keep:
                    with admin.connect() as c:
                        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
