"""Billing run at scale against a fair floor.

Workload: N tenants (default 100,000), each on a plan with one fixed and two usage charges
(graduated and per unit), half of them taxed at 20 %, and 10 usage events per tenant
(1,000,000 by default), billed for ``--period 2026-10``.

For SQLite and PostgreSQL (skipped if unreachable), in one invocation:

- seed a fresh store (``seed(url, tenants, events)``; the Reports bench reuses it); the
  floor and the run each get a fresh copy of it (a file copy on SQLite, ``CREATE DATABASE
  … TEMPLATE`` on PostgreSQL), ``--repeat N`` times, alternately (best of N is reported);
- floor, on the clone, in a child process: the fastest straightforward hand-written way to
  write the rows the run writes. One transaction on the driver's own connection
  (``sqlite3`` / ``psycopg``; on SQLite with the settings mno gives its connections):
  read tenants and subscriptions, sum usage in SQL per tenant and metric within each
  timezone's month, rate the catalogue in plain Python, then insert
  the invoices, invoice lines, audit rows, ``invoice.created`` events and the run row
  (``executemany`` on SQLite, ``cursor.copy`` on PostgreSQL) and count the billed period on
  each subscription. A draft run posts nothing to the ledger (invoices post when issued),
  so neither writes ledger entries;
- ``mno billing run --period 2026-10`` on its copy, in a child process;
- check that both stores now hold the same rows (every column but ids and timestamps);
- print both times, their ratio, the engine's peak RSS and PASS/MISS per goal.

Goal: the run takes at most 1.5x the floor on each store.

``--rss`` instead bills ``--rss-tenants`` (1,000,000) on PostgreSQL and prints the run's peak
RSS (``VmHWM``) every ``--rss-every`` (100,000) tenants billed and at the end; goals: at most
1 GiB, and flat (the end at most 1.25x the first mark).

Usage: ``python bench/billing.py [--tenants N] [--events-per-tenant 10] [--only sqlite]
[--repeat N]``,
``python bench/billing.py --rss [--rss-tenants 1000000] [--rss-every 100000]
[--events-per-tenant 10]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
RATIO_GOAL = 1.5
RSS_GOAL_MIB = 1024
RSS_FLAT = 1.25


def seed(url: str, tenants: int, events_per_tenant: int = 10, batch: int = 20_000) -> None:
    """Fill an upgraded, empty store: tenants, one subscription each, usage in October."""
    import sqlalchemy as sa
    from sqlmodel import col

    from mno.billing import documents
    from mno.store import db
    from mno.store.bulk import Rows
    from mno.store.models.billing import Plan, Subscription, UsageEvent
    from mno.store.models.tenancy import Tenant

    db.upgrade(db.get_engine(url))
    with db.session_scope(url) as s:
        documents.apply_text(s, PLAN)
        plan_id = s.execute(sa.select(col(Plan.id)).where(col(Plan.code) == "bench")).scalar_one()
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
            rows_of = Rows(c)  # COPY on PostgreSQL, multi-row INSERTs on SQLite
            rows_of.insert_dicts(
                t_ten,
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
            rows_of.insert_dicts(
                t_sub,
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
            rows_of.insert_dicts(t_use, rows)


# The floor -------------------------------------------------------------------------------
#
# The catalogue above, as the floor rates it (PLAN's numbers, parsed once).
CENT = Decimal("0.01")
FIXED = Decimal("49.00")
TIERS = [
    (Decimal(1000), Decimal("0")),
    (Decimal(10000), Decimal("0.002")),
    (None, Decimal("0.001")),
]
STORAGE_PRICE = Decimal("0.10")
VAT = {"rate": "fr-vat", "percent": "20", "inclusive": False}
INVOICE_COLS = (
    "id", "created_at", "updated_at", "tenant_id", "run_id", "period", "kind", "issuer",
    "status", "currency", "subtotal_minor", "discount_minor", "tax_minor", "credit_minor",
    "total_minor", "paid_minor", "tax_detail",
)  # fmt: skip
LINE_COLS = (
    "id", "created_at", "updated_at", "invoice_id", "line_key", "subscription_id",
    "charge_ref", "kind", "description", "period_start", "period_end", "quantity",
    "unit_price", "proration", "amount_minor", "detail",
)  # fmt: skip
AUDIT_COLS = (
    "id", "created_at", "updated_at", "at", "actor", "action", "target_type", "target_id",
    "target", "tenant_id", "diff",
)  # fmt: skip
EVENT_COLS = ("id", "created_at", "updated_at", "type", "tenant_id", "payload")
RUN_COLS = (
    "id", "created_at", "updated_at", "period", "status", "tenant_key", "tenants",
    "invoices", "failed", "totals", "finished_at",
)  # fmt: skip


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _qty(value: Any) -> Decimal:
    """A summed quantity without the column's trailing zeros (as the run writes it)."""
    d = Decimal(str(value or 0))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def _usage_line(metric: str, qty: Decimal) -> tuple[str, str, int, str]:
    """quantity, unit price, amount in cents and detail of a usage line."""
    if metric == "storage_gb":
        raw = qty * STORAGE_PRICE
        detail: dict[str, Any] = {"tiers": [], "model": "per_unit"}
    else:
        raw, lower, tiers = Decimal(0), Decimal(0), []
        for up, price in TIERS:
            if qty <= lower:
                break
            top = qty if up is None else min(qty, up)
            part = (top - lower) * price + Decimal(0)
            tiers.append(
                {
                    "from": str(lower),
                    "to": str(top),
                    "units": str(top - lower),
                    "unit_price": str(price),
                    "amount": str(part),
                }
            )
            raw += part
            if up is None:
                break
            lower = up
        detail = {"tiers": tiers, "model": "graduated"}
    amount = raw.quantize(CENT, rounding=ROUND_HALF_UP)
    unit = (raw / qty).normalize() if qty and raw else Decimal(0)
    return str(qty), str(unit), int(amount.scaleb(2)), _dumps(detail)


def _months(tz: str) -> tuple[datetime, datetime, datetime]:
    """October's and November's bounds in ``tz``, as UTC instants."""
    zone = ZoneInfo(tz)
    return tuple(  # type: ignore[return-value]
        datetime(2026, m, 1, tzinfo=zone).astimezone(UTC) for m in (10, 11, 12)
    )


def _span(a: datetime, b: datetime, tz: str) -> str:
    zone = ZoneInfo(tz)
    last = b.astimezone(zone).date() - timedelta(days=1)
    return f"{a.astimezone(zone).date().isoformat()} to {last.isoformat()}"


class _Ids:
    """Time-ordered ids as 32 hex digits: a millisecond prefix, then a counter."""

    def __init__(self) -> None:
        self.head = f"{time.time_ns() // 1_000_000:012x}7"
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"{self.head}{self.n:019x}"


def floor(url: str) -> dict[str, Any]:
    """Bill the period by hand on the driver's connection, in one transaction."""
    t0 = time.perf_counter()
    pg = url.startswith("postgresql")
    ids = _Ids()
    now = datetime.now(UTC)
    if pg:
        import psycopg
        import sqlalchemy as sa

        conninfo = sa.engine.make_url(url).set(drivername="postgresql")
        conn: Any = psycopg.connect(conninfo.render_as_string(hide_password=False))
        ts: Any = lambda v: v  # noqa: E731 - aware datetimes as they are
        uid: Any = str
        mark = "%s"
    else:
        conn = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
        # the settings mno.store.db gives its own SQLite connections
        pragmas = (
            "foreign_keys=ON",
            "synchronous=NORMAL",
            "temp_store=MEMORY",
            "cache_size=-65536",
        )
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("BEGIN IMMEDIATE")

        def ts(v: datetime) -> str:
            return v.astimezone(UTC).isoformat(" ", "microseconds")[:26]

        def uid(v: str) -> str:
            return str(uuid.UUID(hex=v))

        mark = "?"
    at = ts(now)
    run_id = ids()
    cur = conn.cursor()
    # the tenants to bill, with their subscription
    cur.execute(
        "SELECT t.id, t.key, t.timezone, t.country, s.id FROM tenant t "
        "JOIN billing_subscription s ON s.tenant_id = t.id "
        f"WHERE s.status = 'active' AND s.plan_code = {mark} ORDER BY t.id",
        ("bench",),
    )
    tenants = cur.fetchall()
    # usage per tenant and metric within the tenant's October
    usage: dict[tuple[Any, str], Any] = {}
    for tz in TIMEZONES:
        ms, me, _ = _months(tz)
        cur.execute(
            "SELECT u.tenant_id, u.metric_code, sum(u.quantity) FROM billing_usage_event u "
            f"JOIN tenant t ON t.id = u.tenant_id WHERE t.timezone = {mark} "
            f"AND u.at >= {mark} AND u.at < {mark} GROUP BY u.tenant_id, u.metric_code",
            (tz, ts(ms), ts(me)),
        )
        for tid, metric, total in cur:
            usage[(tid, metric)] = total
    # rate
    spans = {}
    for tz in TIMEZONES:
        ms, me, nme = _months(tz)
        oct_, nov = (ts(ms), ts(me)), (ts(me), ts(nme))
        spans[tz] = (
            ms.isoformat(),
            me.isoformat(),
            nme.isoformat(),
            oct_,
            nov,
            f"bench usage {_span(ms, me, tz)}",
            f"bench fixed {_span(me, nme, tz)}",
        )
    rated: dict[tuple[str, Decimal], tuple[str, str, int, str]] = {}
    fixed_detail = _dumps({"tiers": []})
    invoices, lines, audits, events, subs = [], [], [], [], []
    total_cents = 0
    for tid, key, tz, country, sid in tenants:
        oct_s, nov_s, dec_s, oct_, nov, usage_desc, fixed_desc = spans[tz]
        inv = ids()
        sub = uid(sid)
        subtotal = 0
        for idx, metric in ((1, "api_calls"), (2, "storage_gb")):
            qty = _qty(usage.get((tid, metric)))
            found = rated.get((metric, qty))
            if found is None:
                found = rated[(metric, qty)] = _usage_line(metric, qty)
            q, unit, cents, detail = found
            subtotal += cents
            lines.append(
                (ids(), at, at, inv, f"{sub}|{idx}|{oct_s}|{nov_s}", sid, str(idx), "usage",
                 usage_desc, *oct_, q, unit, "1", cents, detail)
            )  # fmt: skip
        lines.append(
            (ids(), at, at, inv, f"{sub}|0|{nov_s}|{dec_s}", sid, "0", "fixed", fixed_desc,
             *nov, "1", "49", "1", 4900, fixed_detail)
        )  # fmt: skip
        subtotal += 4900
        taxed = country == "FR"
        tax = (subtotal * 20 + 50) // 100 if taxed else 0
        total = subtotal + tax
        total_cents += total
        tax_detail = VAT if taxed else {}
        invoices.append(
            (inv, at, at, tid, run_id, PERIOD, "period", "default", "draft", "EUR", subtotal,
             0, tax, 0, total, 0, _dumps(tax_detail))
        )  # fmt: skip
        inv_id, tenant = str(uuid.UUID(hex=inv)), uid(tid)
        after = {
            "credit_minor": 0, "currency": "EUR", "discount_minor": 0, "id": inv_id,
            "issuer": "default", "kind": "period", "paid_minor": 0, "period": PERIOD,
            "run_id": str(uuid.UUID(hex=run_id)), "status": "draft", "subtotal_minor": subtotal,
            "tax_detail": tax_detail, "tax_minor": tax, "tenant_id": tenant,
            "total_minor": total,
        }  # fmt: skip
        audits.append(
            (ids(), at, at, at, "bench", "invoice.create", "invoice", inv_id, key, tid,
             _dumps({"before": {}, "after": after}))
        )  # fmt: skip
        payload = {
            "id": inv_id, "tenant": key, "number": None, "status": "draft", "currency": "EUR",
            "total_minor": total, "period": PERIOD,
        }  # fmt: skip
        events.append((ids(), at, at, "invoice.created", tid, _dumps(payload)))
        subs.append(sid)
    totals = {"EUR": total_cents}
    summary = {
        "run": str(uuid.UUID(hex=run_id)), "period": PERIOD, "tenants": len(tenants),
        "invoices": len(invoices), "lines": len(lines), "totals": totals, "errors": [],
    }  # fmt: skip
    run_row = (run_id, at, at, PERIOD, "done", None, len(tenants), len(invoices), "[]",
               _dumps(totals), at)  # fmt: skip
    events.append((ids(), at, at, "billing.run_finished", None, _dumps(summary)))
    # write
    tables = (
        ("billing_run", RUN_COLS, [run_row]),
        ("billing_invoice", INVOICE_COLS, invoices),
        ("billing_invoice_line", LINE_COLS, lines),
        ("audit_entry", AUDIT_COLS, audits),
        ("outbox_event", EVENT_COLS, events),
    )
    for table, cols, rows in tables:
        names = ", ".join(cols)
        if pg:
            with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(cols))
            cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
    if pg:
        cur.execute(
            "UPDATE billing_subscription SET periods_billed = periods_billed + 1 "
            "WHERE id = ANY(%s)",
            (subs,),
        )
    else:
        cur.executemany(
            "UPDATE billing_subscription SET periods_billed = periods_billed + 1 WHERE id = ?",
            [(s,) for s in subs],
        )
    conn.commit() if pg else conn.execute("COMMIT")
    conn.close()
    return {
        "seconds": time.perf_counter() - t0,
        "invoices": len(invoices),
        "lines": len(lines),
        "events": len(events),
    }


# Same rows? ------------------------------------------------------------------------------


def _norm(value: Any, drop: tuple[str, ...] = ()) -> str:
    """JSON (text on SQLite, parsed on PostgreSQL) as sorted text, some keys left out."""
    data = json.loads(value) if isinstance(value, str) else value
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in drop}
        if isinstance(data.get("after"), dict):
            data["after"] = {k: v for k, v in data["after"].items() if k not in drop}
    return json.dumps(data, sort_keys=True)


def fingerprint(url: str) -> dict[str, Any]:
    """What a run wrote, without ids and timestamps: counts and a digest per table."""
    import sqlalchemy as sa

    queries = {
        "invoices": (
            "SELECT t.key, i.period, i.kind, i.issuer, i.status, i.currency, i.subtotal_minor, "
            "i.discount_minor, i.tax_minor, i.credit_minor, i.total_minor, i.paid_minor, "
            "i.tax_detail FROM billing_invoice i JOIN tenant t ON t.id = i.tenant_id",
            (),
        ),
        "lines": (
            "SELECT t.key, l.line_key, l.subscription_id, l.charge_ref, l.kind, l.description, "
            "l.period_start, l.period_end, l.quantity, l.unit_price, l.proration, "
            "l.amount_minor, l.detail FROM billing_invoice_line l "
            "JOIN billing_invoice i ON i.id = l.invoice_id JOIN tenant t ON t.id = i.tenant_id",
            (),
        ),
        "audit": (
            "SELECT target, action, target_type, tenant_id, diff FROM audit_entry "
            "WHERE action = 'invoice.create'",
            ("id", "run_id"),
        ),
        "events": (
            "SELECT type, tenant_id, payload FROM outbox_event WHERE type = 'invoice.created'",
            ("id",),
        ),
        "subscriptions": ("SELECT id, periods_billed FROM billing_subscription", ()),
        "runs": ("SELECT period, status, tenants, invoices, totals FROM billing_run", ()),
    }
    out: dict[str, Any] = {}
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            for name, (sql, drop) in queries.items():
                rows = sorted(
                    repr(tuple(_norm(v, drop) if isinstance(v, str | dict) and _is_json(v)
                               else v for v in row))
                    for row in c.exec_driver_sql(sql)
                )  # fmt: skip
                digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
                out[name] = (len(rows), digest, rows[:1])
    finally:
        engine.dispose()
    return out


def _is_json(v: Any) -> bool:
    return isinstance(v, dict) or (isinstance(v, str) and v[:1] in "{[")


# Children --------------------------------------------------------------------------------


# ``ru_maxrss`` of a child starts from its parent's high-water mark at fork time (Linux keeps
# it across exec), and this process holds a seeded store's worth of memory: each child
# reports its own ``VmHWM`` (the high-water mark of the memory map exec gave it) at exit.
_HWM = (
    "import atexit, os, runpy, sys\n"
    "def hwm():\n"
    "    with open('/proc/self/status') as f, open(os.environ['BENCH_HWM'], 'w') as out:\n"
    "        out.write(next(x for x in f if x.startswith('VmHWM:')).split()[1])\n"
    "atexit.register(hwm)\n"
    "sys.argv = sys.argv[1:]\n"
    "if sys.argv[0].endswith('.py'):\n"
    "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
    "else:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


CPU: dict[str, float] = {}  # CPU seconds (user + system) of the last child, "last"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``python <script or module> args…`` to its end: (wall seconds, its peak RSS in
    MiB, stdout); its CPU seconds go to ``CPU["last"]`` (children run one at a time)."""
    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "hwm"
        full = [sys.executable, "-c", _HWM, *cmd]
        t0, c0 = time.perf_counter(), _cpu()
        out = subprocess.run(
            full, env={**env, "BENCH_HWM": str(hwm)}, cwd=ROOT, capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        CPU["last"] = _cpu() - c0
        if out.returncode:
            raise SystemExit(f"{cmd} failed: {out.stderr.strip()[-2000:]}")
        return seconds, int(hwm.read_text()) / 1024, out.stdout  # VmHWM is in KiB


def engine_run(url: str) -> tuple[float, float, dict[str, Any]]:
    env = {**os.environ, "MNO_DB_URL": url, "NO_COLOR": "1"}
    cmd = ["mno", "billing", "run", "--period", PERIOD, "-o", "json"]
    seconds, rss, out = child(cmd, env)
    return seconds, rss, json.loads(out)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# Stores ----------------------------------------------------------------------------------


@contextmanager
def pg_database(tag: str) -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards); its URL."""
    import sqlalchemy as sa

    name = f"mno_bench_{tag}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(PG_SERVER).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from mno.store import db

        db.dispose_all()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def clone(url: str, to: str) -> None:
    """Copy the store at ``url`` to ``to`` (a file copy, or a PostgreSQL template copy)."""
    import sqlalchemy as sa

    from mno.store import db

    db.dispose_all()
    if url.startswith("sqlite"):
        src = url.split("///", 1)[1]
        with sqlite3.connect(src) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dst = to.split("///", 1)[1]
        for stale in (f"{dst}-wal", f"{dst}-shm"):  # an older copy's log must not replay
            Path(stale).unlink(missing_ok=True)
        shutil.copyfile(src, dst)
        return
    admin = sa.create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    src, dst = (str(sa.engine.make_url(u).database) for u in (url, to))
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE "{dst}"')
        c.exec_driver_sql(f'CREATE DATABASE "{dst}" TEMPLATE "{src}"')
    admin.dispose()


def vacuum(url: str) -> None:
    """Fresh planner statistics, as an operator's store has them."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        return
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def one_store(name: str, urls: tuple[str, str, str], tenants: int, per: int, repeat: int) -> bool:
    """Seed the first store; then ``repeat`` times, each on a fresh copy of it, the floor
    and the run, alternately; compare what they wrote; the best time of each against the
    goal (the machine may be shared: the best of several is the least disturbed)."""
    seeded, floor_url, run_url = urls
    t0 = time.perf_counter()
    seed(seeded, tenants, per)
    vacuum(seeded)
    print(
        f"[{name}] seeded {tenants:,} tenants, {tenants * per:,} usage events "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    env = {**os.environ, "NO_COLOR": "1"}
    floors: list[tuple[float, float, float]] = []  # wall, in process, CPU seconds
    runs: list[tuple[float, float, float]] = []
    same = True
    for n in range(1, repeat + 1):
        clone(seeded, floor_url)
        f_s, f_rss, f_out = child([__file__, "--floor-only", floor_url], env)
        fl = json.loads(f_out)
        floors.append((f_s, fl["seconds"], CPU["last"]))
        print(
            f"[{name}] #{n} floor: {f_s:.2f} s wall ({fl['seconds']:.2f} s in process, "
            f"{CPU['last']:.2f} s CPU), "
            f"{fl['invoices']:,} invoices, {fl['lines']:,} lines, {fl['events']:,} events, "
            f"peak RSS {f_rss:.0f} MiB",
            flush=True,
        )
        clone(seeded, run_url)
        r_s, r_rss, res = engine_run(run_url)
        runs.append((r_s, res["duration_s"], CPU["last"]))
        print(
            f"[{name}] #{n} mno billing run: {r_s:.2f} s wall ({res['duration_s']:.2f} s in "
            f"run, {CPU['last']:.2f} s CPU), {res['tenants']:,} tenants, "
            f"{res['invoices']:,} invoices, "
            f"{res['lines']:,} lines, totals {res['totals']}, errors {len(res['errors'])}, "
            f"peak RSS {r_rss:.0f} MiB",
            flush=True,
        )
        mine, theirs = fingerprint(run_url), fingerprint(floor_url)
        for table in mine:
            if mine[table] != theirs[table]:
                print(f"[{name}] rows differ in {table}: run {mine[table]} floor {theirs[table]}")
        same = same and mine == theirs
        print(
            f"[{name}] #{n} same rows written by run and floor: {'yes' if mine == theirs else 'NO'}"
            f" ({', '.join(f'{k} {v[0]:,}' for k, v in mine.items())})",
            flush=True,
        )
    f_best, r_best = min(floors), min(runs)
    ratio = r_best[0] / f_best[0]
    ok = same and ratio <= RATIO_GOAL
    print(
        f"[{name}] best of {repeat}: floor {f_best[0]:.2f} s, run {r_best[0]:.2f} s; ratio "
        f"run/floor: {ratio:.2f}x wall (in process {r_best[1] / f_best[1]:.2f}x); "
        f"goal <= {RATIO_GOAL}x: {verdict(ok)}",
        flush=True,
    )
    if name == "sqlite":  # all of SQLite's work is in the process: CPU is comparable
        f_cpu, r_cpu = min(f[2] for f in floors), min(r[2] for r in runs)
        print(
            f"[{name}] CPU (user + system, best of {repeat}): floor {f_cpu:.2f} s, run "
            f"{r_cpu:.2f} s; ratio {r_cpu / f_cpu:.2f}x (SQLite works in the process: "
            "unlike wall time, other load on the machine does not inflate it)",
            flush=True,
        )
    r2_s, _, again = engine_run(run_url)
    print(f"[{name}] rerun: {r2_s:.2f} s, {again['invoices']} new invoices", flush=True)
    return ok


def _hwm_mib(pid: int) -> float:
    """The peak RSS so far (``VmHWM``) of a running process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        return int(next(x for x in f if x.startswith("VmHWM:")).split()[1]) / 1024


def _invoices(url: str) -> int:
    import psycopg
    import sqlalchemy as sa

    conninfo = sa.engine.make_url(url).set(drivername="postgresql")
    with psycopg.connect(conninfo.render_as_string(hide_password=False)) as c:
        row = c.execute("SELECT count(*) FROM billing_invoice").fetchone()
        return int(row[0]) if row else 0


def rss_run(n: int, per: int, every: int) -> None:
    """Bill ``n`` tenants on a fresh PostgreSQL store in a child process; print its peak RSS
    each time another ``every`` tenants are billed and at the end."""
    with pg_database("rss") as url:
        t0 = time.perf_counter()
        seed(url, n, per)
        vacuum(url)
        from mno.store import db

        db.dispose_all()
        print(
            f"[postgres rss] seeded {n:,} tenants, {n * per:,} usage events "
            f"in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        env = {**os.environ, "MNO_DB_URL": url, "NO_COLOR": "1"}
        with tempfile.TemporaryDirectory() as tmp:
            hwm = Path(tmp) / "hwm"
            cmd = [sys.executable, "-c", _HWM, "mno", "billing", "run", "--period", PERIOD]
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [*cmd, "-o", "json"],
                env={**env, "BENCH_HWM": str(hwm)},
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            marks: list[tuple[int, float]] = []
            nxt = every
            while proc.poll() is None:
                time.sleep(5)
                try:
                    billed, peak = _invoices(url), _hwm_mib(proc.pid)
                except (OSError, StopIteration):
                    break  # the run has just ended
                if billed >= nxt:
                    marks.append((billed, peak))
                    print(
                        f"[postgres rss] {billed:,} of {n:,} tenants billed after "
                        f"{time.perf_counter() - t0:.0f} s: peak RSS so far {peak:.0f} MiB",
                        flush=True,
                    )
                    nxt = (billed // every + 1) * every
            out, err = proc.communicate()
            seconds = time.perf_counter() - t0
            if proc.returncode:
                raise SystemExit(f"billing run failed: {err.strip()[-2000:]}")
            res = json.loads(out)
            peak = int(hwm.read_text()) / 1024
    print(
        f"[postgres rss] {n:,} tenants: run {seconds:.2f} s wall, {res['invoices']:,} invoices, "
        f"errors {len(res['errors'])}, peak RSS {peak:.0f} MiB",
        flush=True,
    )
    print(
        f"[postgres rss] peak RSS {peak:.0f} MiB; goal <= {RSS_GOAL_MIB} MiB: "
        f"{verdict(peak <= RSS_GOAL_MIB)}",
        flush=True,
    )
    if marks:
        first, lo = marks[0]
        print(
            f"[postgres rss] at {n:,} tenants {peak / lo:.2f}x the peak at {first:,}; goal flat "
            f"(<= {RSS_FLAT}x): {verdict(peak / lo <= RSS_FLAT)}",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tenants", type=int, default=100_000)
    p.add_argument("--events-per-tenant", type=int, default=10)
    p.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    p.add_argument("--repeat", type=int, default=1, help="floor and run N times each: best")
    p.add_argument("--rss", action="store_true", help="measure peak RSS on PostgreSQL")
    p.add_argument("--rss-tenants", type=int, default=1_000_000)
    p.add_argument("--rss-every", type=int, default=100_000, help="print the RSS every N billed")
    p.add_argument("--floor-only", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.floor_only:
        print(json.dumps(floor(a.floor_only)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MNO_HOME"] = tmp
        if a.rss:
            print(
                f"billing bench, peak RSS on PostgreSQL: {a.rss_tenants:,} tenants x 3 "
                f"charges, {a.events_per_tenant} usage events each",
                flush=True,
            )
            rss_run(a.rss_tenants, a.events_per_tenant, a.rss_every)
            return
        print(
            f"billing bench: {a.tenants:,} tenants x (1 fixed + 2 usage charges), "
            f"{a.tenants * a.events_per_tenant:,} usage events, period {PERIOD}",
            flush=True,
        )
        if a.only in (None, "sqlite"):
            names = (f"sqlite:///{tmp}/seeded.db", f"sqlite:///{tmp}/floor.db")
            urls = (*names, f"sqlite:///{tmp}/run.db")
            one_store("sqlite", urls, a.tenants, a.events_per_tenant, a.repeat)
        if a.only in (None, "postgres"):
            try:
                with (
                    pg_database("seeded") as seeded,
                    pg_database("floor") as floor_url,
                    pg_database("run") as run_url,
                ):
                    urls = (seeded, floor_url, run_url)
                    one_store("postgres", urls, a.tenants, a.events_per_tenant, a.repeat)
            except Exception as exc:
                if "connect" not in str(exc).lower():
                    raise
                print(f"[postgres] skipped: {exc}")


if __name__ == "__main__":
    main()
