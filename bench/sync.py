"""Connec sync throughput: 100,000 records from a local paginated API, 500 per page.

Measures, in one run against the same API (served by a separate process):

- floor: a bare loop that fetches and parses every page and stores nothing;
- mno initial sync (records/s) into a fresh store: SQLite, PostgreSQL (a fresh database
  on the server of ``MNO_TEST_PG_URL`` or ``--pg``) or both (``--store``);
- mno incremental sync after 1% of the records change (time and requests);
- dlt's ``rest_api`` source with an incremental cursor, merging into duckdb
  (``pip install "dlt[duckdb]"``; bench only, not a dependency of mno).

Goals: initial >= 3x dlt's throughput and within 5x of the floor; incremental <= 5% of
the initial time. The machine's load average is printed with the figures, since the
ratios are only comparable between runs on an equally quiet machine.

Each round measures the floor and each store's initial and incremental syncs afresh (a
new API, a new store); the ratios compare the medians of the rounds (``--rounds``,
default 3), so that one slow moment of a shared machine does not decide them. dlt runs
once, in the last round.

Usage: ``python bench/sync.py [--records N] [--page 500] [--store sqlite|postgres|both]
[--rounds 3] [--skip-dlt]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FLOOR_CPU = RUN_CPU = 0.0  # CPU seconds of this process (all threads) in the last one
PG_SERVER = os.environ.get(
    "MNO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def start_api(records: int, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    tmp.mkdir(parents=True, exist_ok=True)
    port_file = tmp / "api.url"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.sync.api", str(records), str(port_file)], cwd=ROOT
    )
    for _ in range(600):
        if port_file.exists() and port_file.read_text():
            return proc, port_file.read_text()
        time.sleep(0.05)
    raise SystemExit("the API did not start")


def stats(url: str) -> int:
    import httpx

    return int(httpx.get(f"{url}/stats/x").json()["requests"])


def floor(url: str, page: int) -> tuple[float, int]:
    import httpx

    n, p = 0, 1
    global FLOOR_CPU
    c = time.process_time()
    t = time.perf_counter()
    with httpx.Client() as client:
        while True:
            body = client.get(f"{url}/page/contacts", params={"page": p, "limit": page}).json()
            rows = body["data"]
            n += len(rows)
            if len(rows) < page:
                break
            p += 1
    took = time.perf_counter() - t
    FLOOR_CPU = time.process_time() - c
    return took, n


CONNECTOR = """name: bench
app: bench
base_url: {url}
rate_limit: {{requests: 100000, per_seconds: 1}}
entities:
  - canonical: contact
    list: {{path: /page/contacts}}
    records: data
    pagination: {{type: page, param: page, size_param: limit, size: {page}}}
    incremental: {{param: updated_since, format: iso8601}}
    id: id
    updated_at: updated_at
    deleted: {{flag: is_deleted}}
    mapping:
      name: name
      email: {{source: email, transform: lower}}
      phone: phone
      fetched_at: fetched_at
    ignore_fields: [fetched_at]
"""


def fresh_pg(server: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"mno_bench_sync_{uuid.uuid4().hex[:8]}"
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


def mno_setup(url: str, page: int, db_url: str) -> str:
    from mno.store import db
    from mno.store.db import session_scope
    from mno.sync import connections, spec
    from mno.tenancy import apps, tenants

    if not db.is_sqlite(db_url):
        db.upgrade(db.get_engine(db_url))
    with session_scope(db_url) as s:
        tenants.create(s, "acme")
        apps.create(s, "bench", code="bench", stack="connector", owner="acme")
        spec.apply(s, spec.parse(CONNECTOR.format(url=url, page=page)))
        return connections.add(s, "acme", "bench", push=False).name


def mno_run(name: str, db_url: str) -> tuple[float, dict[str, int]]:
    from mno.sync import engine

    global RUN_CPU
    c = time.process_time()
    t = time.perf_counter()
    run = engine.run(name, db_url=db_url)
    took = time.perf_counter() - t
    RUN_CPU = time.process_time() - c
    if run.status != "success":
        raise SystemExit(f"mno run failed: {run.error}")
    return took, dict(run.counts)


def dlt_run(url: str, page: int, tmp: Path) -> tuple[float, int]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    t = time.perf_counter()
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {"base_url": url},
            "resources": [
                {
                    "name": "contacts",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "page/contacts",
                        "data_selector": "data",
                        "params": {
                            "limit": page,
                            "updated_since": {
                                "type": "incremental",
                                "cursor_path": "updated_at",
                                "initial_value": "1970-01-01T00:00:00Z",
                            },
                        },
                        "paginator": {
                            "type": "page_number",
                            "page_param": "page",
                            "base_page": 1,
                            "total_path": None,
                            "stop_after_empty_page": True,
                        },
                    },
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_sync",
        destination=dlt.destinations.duckdb(str(tmp / "dlt.duckdb")),
        dataset_name="bench",
        pipelines_dir=str(tmp / "dlt"),
    )
    pipeline.run(source)
    took = time.perf_counter() - t
    import duckdb

    with duckdb.connect(str(tmp / "dlt.duckdb")) as con:
        n = con.execute("select count(*) from bench.contacts").fetchone()[0]
    return took, int(n)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def mno_bench(url: str, n: int, page: int, db_url: str, label: str) -> dict[str, float]:
    import httpx

    name = mno_setup(url, page, db_url)
    i_time, counts = mno_run(name, db_url)
    rate = counts["created"] / i_time
    print(
        f"mno initial sync [{label}]: {i_time:.2f} s, {rate:,.0f} rec/s "
        f"({counts['created']} created, {counts['requests']} requests; "
        f"{RUN_CPU:.2f} s CPU in this process)  [{load()}]"
    )
    touched = httpx.post(f"{url}/admin/touch", json={"step": 100}).json()
    before = stats(url)
    inc_time, inc = mno_run(name, db_url)
    made = stats(url) - before - 1  # the stats call itself
    print(
        f"mno incremental [{label}] after {touched['touched']} changes "
        f"({touched['touched'] / n:.0%}): "
        f"{inc_time:.3f} s, {made} requests, {inc.get('updated', 0)} updated, "
        f"{inc.get('unchanged', 0)} unchanged"
    )
    return {"initial_s": i_time, "rate": rate, "incremental_s": inc_time, "requests": made}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server URL")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are compared")
    parser.add_argument("--skip-dlt", action="store_true")
    args = parser.parse_args()
    n, page = args.records, args.page
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ["MNO_HOME"] = str(tmp / "home")
        os.environ["MNO_ACTOR"] = "bench"
        floors: list[float] = []
        runs: dict[str, list[dict[str, float]]] = {store: [] for store in stores}
        print(f"API: {n} records, {page} per page, served by a separate process")
        for rnd in range(1, args.rounds + 1):
            print(f"--- round {rnd} of {args.rounds} ---")
            # one API per store and round, so that each initial sync reads the same
            # unedited data; the floor reads the round's first one
            for i, store in enumerate(stores):
                proc, url = start_api(n, tmp / f"{store}-{rnd}")
                try:
                    if i == 0:
                        f_time, f_n = floor(url, page)
                        floors.append(f_time)
                        print(
                            f"floor (fetch + parse, store nothing): {f_time:.2f} s, "
                            f"{f_n / f_time:,.0f} rec/s ({FLOOR_CPU:.2f} s CPU in this "
                            f"process)  [{load()}]"
                        )
                    if store == "sqlite":
                        db_url = f"sqlite:///{tmp / f'store-{rnd}.db'}"
                        runs[store].append(mno_bench(url, n, page, db_url, store))
                        (tmp / f"store-{rnd}.db").unlink()
                    else:
                        db_url = fresh_pg(args.pg)
                        try:
                            runs[store].append(mno_bench(url, n, page, db_url, store))
                        finally:
                            drop_pg(args.pg, db_url)
                    if not args.skip_dlt and rnd == args.rounds and store == stores[-1]:
                        d_time, d_n = dlt_run(url, page, tmp)
                        print(
                            f"dlt rest_api -> duckdb (incl. start-up): {d_time:.2f} s, "
                            f"{d_n / d_time:,.0f} rec/s ({d_n} rows)  [{load()}]"
                        )
                finally:
                    proc.terminate()
                    proc.wait()
        f_med = statistics.median(floors)
        print(f"--- medians of {args.rounds} rounds (ratios of medians) ---")
        print(f"floor: {f_med:.2f} s (rounds: {', '.join(f'{x:.2f}' for x in floors)})")
        summary: dict[str, float] = {"floor_s": round(f_med, 3)}
        for store, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            initials = ", ".join(f"{r['initial_s']:.2f}" for r in rs)
            incrementals = ", ".join(f"{r['incremental_s']:.3f}" for r in rs)
            print(
                f"[{store}] initial {med['initial_s']:.2f} s (rounds: {initials}), "
                f"incremental {med['incremental_s']:.3f} s (rounds: {incrementals}), "
                f"{med['requests']:.0f} requests"
            )
            if not args.skip_dlt:
                ratio = med["rate"] / (d_n / d_time)
                print(
                    f"[{store}] mno initial vs dlt throughput: {ratio:.2f}x  (goal >= 3x: "
                    f"{'met' if ratio >= 3 else 'NOT met'})"
                )
            slow = med["initial_s"] / f_med
            print(
                f"[{store}] mno initial time vs floor: {slow:.2f}x slower  (goal <= 5x: "
                f"{'met' if slow <= 5 else 'NOT met'})"
            )
            share = med["incremental_s"] / med["initial_s"]
            print(
                f"[{store}] incremental / initial time: {share:.1%}  (goal <= 5%: "
                f"{'met' if share <= 0.05 else 'NOT met'})"
            )
            summary.update({f"{store}_{k}": round(v, 3) for k, v in med.items() if k != "rate"})
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
