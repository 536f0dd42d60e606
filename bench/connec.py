"""Connec: batch ingest and filtered queries over one tenant's invoices.

Measures, per store (SQLite, PostgreSQL or both, ``--store``):

- ingest: ``N`` invoices written through ``mno.connec.writes.apply`` in batches of 1,000
  operations, one transaction each (records, id maps, change rows, one
  ``connec.invoices.created`` event per record, the audit row), as the batch endpoint
  writes them; records/s;
- floor: the same record rows inserted into ``sync_record`` of a fresh store, bare: per
  1,000 rows one ``COPY`` (PostgreSQL) or ``executemany`` (SQLite) through the driver
  (no validation, id maps, history or events); the ratio ingest/floor is printed (goal:
  at most 3x); and a second floor, in another fresh store, that also writes the same id
  map, change and event rows bare (``floor_every_table``), with its ratio;
- query, after ``ANALYZE`` (the statistics autovacuum keeps): ``--queries`` filtered
  pages (``total_amount gt X and status eq 'paid'``, a date
  range, ``contains``), 100 records each, in one tenant's records; p50 and p95 in ms
  (goal: p95 at most 50 ms), and the p95 of each kind of filter. ``record_data`` is how
  the store keeps the records' JSON.

Usage: ``python bench/connec.py [--records 20000] [--store sqlite|postgres|both]
[--queries 200]``. PostgreSQL: a fresh database on the server of ``MNO_TEST_PG_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_SERVER = os.environ.get(
    "MNO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BATCH = 1000
STATUSES = ["draft", "authorised", "paid", "void"]


def fresh_pg(server: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"mno_bench_connec_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_pg(server: str, url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from mno.store import db

    db.dispose_all()
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def invoices(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "number": f"INV-{i:07d}",
            "transaction_date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "currency": rng.choice(["USD", "EUR"]),
            "total_amount": f"{rng.randint(1, 100000)}.{rng.randint(0, 99):02d}",
            "balance": f"{rng.randint(0, 1000)}.00",
            "status": rng.choice(STATUSES),
            "organization_id": str(uuid.UUID(int=rng.randint(1, 5000))),
        }
        for i in range(n)
    ]


def prepare(url: str) -> Any:
    from mno.connec import access
    from mno.store import db
    from mno.store.db import session_scope
    from mno.tenancy import apps, tenants

    if not db.is_sqlite(url):
        db.upgrade(db.get_engine(url))
    with session_scope(url) as s:
        tenants.create(s, "acme", name="Acme")
        tenants.create(s, "other", name="Other")
        apps.create(s, "Bench", code="bench", owner="acme")
        return access.writer_for(s, apps.get(s, "bench"), "acme")


def ingest(url: str, writer: Any, rows: list[dict[str, Any]], offset: int = 0) -> float:
    from mno.connec.writes import Op, apply
    from mno.store.db import session_scope

    t0 = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        ops = [
            Op("create", "invoices", d, app_id=f"b{offset + start + i}")
            for i, d in enumerate(rows[start : start + BATCH])
        ]
        with session_scope(url) as s:
            out = apply(s, writer, ops)
        assert out.results[-1].status == 201, out.results[-1]
    return time.perf_counter() - t0


def floor(url: str, rows: list[dict[str, Any]], every_table: bool = False) -> float:
    """The same rows, bare, into an empty store: per 1,000 records one transaction with
    one ``COPY`` per table on PostgreSQL (the driver's own ``copy.write_row``) or one
    ``executemany`` per table on SQLite (the driver's own), of the record rows alone or
    (``every_table``) with the same id map, change and event rows. The client serialises
    the JSON and makes the ids as a bare client would; nothing is validated, hashed or
    audited."""
    from mno import clock
    from mno.store import db

    engine = db.get_engine(url)
    postgres = not db.is_sqlite(url)
    tenant = uuid.uuid4()
    run = uuid.uuid4()
    now = clock.now()
    stamp: Any = now if postgres else now.replace(tzinfo=None).isoformat(" ", "microseconds")

    def uid(value: uuid.UUID) -> Any:
        return value if postgres else value.hex

    tables: list[tuple[str, tuple[str, ...], Any]] = [
        (
            "sync_record",
            ("id", "created_at", "updated_at", "tenant_id", "entity", "data")
            + ("content_hash", "version"),
            lambda r: (r["id"], stamp, stamp, uid(tenant), "invoices", r["json"], "0" * 32, 1),
        )
    ]
    if every_table:
        tables += [
            (
                "sync_id_map",
                ("id", "created_at", "updated_at", "connection_id", "entity", "external_id")
                + ("record_id",),
                lambda r: (
                    uid(uuid.uuid4()),
                    stamp,
                    stamp,
                    uid(run),
                    "invoices",
                    r["app"],
                    r["id"],
                ),
            ),
            (
                "sync_change",
                ("id", "created_at", "updated_at", "run_id", "record_id", "tenant_id")
                + ("entity", "action", "source", "after"),
                lambda r: (
                    uid(uuid.uuid4()),
                    stamp,
                    stamp,
                    uid(run),
                    r["id"],
                    uid(tenant),
                    "invoices",
                    "create",
                    "bench",
                    r["json"],
                ),
            ),
            (
                "outbox_event",
                ("id", "created_at", "updated_at", "type", "tenant_id", "payload"),
                lambda r: (
                    uid(uuid.uuid4()),
                    stamp,
                    stamp,
                    "connec.invoices.created",
                    uid(tenant),
                    json.dumps({"record_id": str(r["id"]), "data": r["data"]}),
                ),
            ),
        ]
    t0 = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        chunk = [
            {"id": uid(uuid.uuid4()), "data": d, "json": json.dumps(d), "app": f"b{start + i}"}
            for i, d in enumerate(rows[start : start + BATCH])
        ]
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            if not postgres:  # the store's connections begin their transactions themselves
                cur.execute("BEGIN")
            for name, cols, make in tables:
                names = ", ".join(f'"{c}"' for c in cols)
                values = [make(r) for r in chunk]
                if postgres:
                    with cur.copy(f'COPY "{name}" ({names}) FROM STDIN') as copy:
                        for v in values:
                            copy.write_row(v)
                else:
                    marks = ", ".join("?" for _ in cols)
                    cur.executemany(f'INSERT INTO "{name}" ({names}) VALUES ({marks})', values)
            raw.commit()
        finally:
            raw.close()
    return time.perf_counter() - t0


def analyze(url: str) -> None:
    """``ANALYZE``, as PostgreSQL's autovacuum does soon after a bulk load (and SQLite's
    own ``ANALYZE``): the queries are timed with the planner's statistics of the
    loaded tables, not with those of the empty ones (never analyzed, a table of 100,000
    records looks like a few rows to the planner, which then sorts every record of the
    tenant instead of walking the page index)."""
    from mno.store import db

    with db.get_engine(url).begin() as conn:
        conn.exec_driver_sql("ANALYZE")


def data_type(url: str) -> str:
    """How the store keeps ``sync_record.data`` (json, jsonb or SQLite's JSON text)."""
    from mno.store import db

    if db.is_sqlite(url):
        return "JSON text"
    with db.get_engine(url).connect() as conn:
        return str(
            conn.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'sync_record' AND column_name = 'data'"
            ).scalar()
        )


def p95_of(took: list[float]) -> float:
    ordered = sorted(took)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


def query_p95(url: str, writer: Any, n: int) -> tuple[float, float, int, dict[str, float]]:
    from mno.connec import queries
    from mno.store.db import session_scope

    rng = random.Random(3)
    took: list[float] = []
    by_kind: dict[str, list[float]] = {"amount_and_status": [], "date_range": [], "contains": []}
    returned = 0
    for i in range(n):
        kind = i % 3
        if kind == 0:
            text = f"total_amount gt {rng.randint(1, 99000)} and status eq 'paid'"
        elif kind == 1:
            month = rng.randint(1, 11)
            text = (
                f"transaction_date ge 2024-{month:02d}-01 and transaction_date lt "
                f"2024-{month + 1:02d}-01 and currency eq 'EUR'"
            )
        else:
            text = f"contains(number, '{rng.randint(0, 999):03d}')"
        t0 = time.perf_counter()
        with session_scope(url, write=False) as s:
            page = queries.list_records(s, writer, "invoices", filter=text, limit=100)
        took.append((time.perf_counter() - t0) * 1000)
        list(by_kind.values())[kind].append(took[-1])
        returned += len(page.records)
    kinds = {name: round(p95_of(ms), 2) for name, ms in by_kind.items() if ms}
    return statistics.median(took), p95_of(took), returned, kinds


def run(store: str, records: int, n_queries: int) -> None:
    from mno.store import db

    rows = invoices(records)
    urls: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="mno-bench-connec-"))
    os.environ["MNO_HOME"] = str(tmp / "home")
    try:
        for _ in range(3):
            if store == "sqlite":
                urls.append(f"sqlite:///{tmp / f'{uuid.uuid4().hex[:6]}.db'}")
            else:
                urls.append(fresh_pg(PG_SERVER))
        main_url, floor_url, floor_all_url = urls
        writer = prepare(main_url)
        prepare(floor_url)
        prepare(floor_all_url)
        spent = ingest(main_url, writer, rows)
        analyze(main_url)
        bare = floor(floor_url, rows)
        bare_all = floor(floor_all_url, rows, every_table=True)
        p50, p95, returned, kinds = query_p95(main_url, writer, n_queries)
        ratio = spent / bare if bare else float("inf")
        ratio_all = spent / bare_all if bare_all else float("inf")
        print(
            json.dumps(
                {
                    "store": store,
                    "record_data": data_type(main_url),
                    "records": records,
                    "ingest_s": round(spent, 2),
                    "ingest_records_per_s": round(records / spent),
                    "floor_s": round(bare, 2),
                    "ingest_vs_floor": round(ratio, 2),
                    "ingest_vs_floor_goal_3x": "PASS" if ratio <= 3 else "MISS",
                    "floor_every_table_s": round(bare_all, 2),
                    "ingest_vs_floor_every_table": round(ratio_all, 2),
                    "ingest_vs_floor_every_table_goal_3x": "PASS" if ratio_all <= 3 else "MISS",
                    "queries": n_queries,
                    "query_p50_ms": round(p50, 2),
                    "query_p95_ms": round(p95, 2),
                    "query_p95_goal_50ms": "PASS" if p95 <= 50 else "MISS",
                    "query_p95_ms_by_kind": kinds,
                    "rows_returned": returned,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                }
            )
        )
    finally:
        db.dispose_all()
        if store == "postgres":
            for url in urls:
                drop_pg(PG_SERVER, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    for store in ("sqlite", "postgres") if args.store == "both" else (args.store,):
        run(store, args.records, args.queries)


if __name__ == "__main__":
    main()
