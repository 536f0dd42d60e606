"""Connec sync throughput: 100,000 records from a local paginated API, 500 per page.

Measures, in one run against the same API (served by a separate process):

- floor: a bare loop that fetches and parses every page and stores nothing;
- mno initial sync (records/s) into a fresh store: SQLite, PostgreSQL (a fresh database
  on the server of ``MNO_TEST_PG_URL`` or ``--pg``) or both (``--store``, default both);
- mno incremental sync after 1% of the records change (time and requests);
- what the lost-update protection costs: the incremental lookback (default ``5m``) makes
  each pass read again what changed in the window before the previous pass started. A
  pass after another 1% change is timed with the default lookback (it reads that 1%
  and, again, the previous pass's 1%) and with ``lookback: 0s`` (the 1% only). This is
  the worst case, a poller running again within the lookback window; the changes are
  stamped by the real clock, the records before them months earlier;
- dlt's ``rest_api`` source with an incremental cursor, merging into duckdb
  (``pip install "dlt[duckdb]"``; bench only, not a dependency of mno).

Goals, each checked per store and printed PASS or MISS:

- initial: at least 5x dlt's throughput, and at most 4x the floor's time;
- incremental (1% changed): at most 3% of the initial sync's time;
- lookback: the default 5m costs at most 5% more time than 0s.

The machine's load average is printed with the figures, since the ratios are only
comparable between runs on an equally quiet machine.

Each round measures the floor and each store's syncs afresh (a new API, a new store);
the ratios compare the medians of the rounds (``--rounds``, default 3), so that one slow
moment of a shared machine does not decide them. dlt runs once, in the last round.

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
    incremental: {{param: updated_since, format: iso8601, lookback: {lookback}}}
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
        spec.apply(s, spec.parse(CONNECTOR.format(url=url, page=page, lookback="5m")))
        return connections.add(s, "acme", "bench", push=False).name


def set_lookback(url: str, page: int, db_url: str, lookback: str) -> None:
    from mno.store.db import session_scope
    from mno.sync import spec

    with session_scope(db_url) as s:
        spec.apply(s, spec.parse(CONNECTOR.format(url=url, page=page, lookback=lookback)))


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


def touch(url: str, offset: int) -> int:
    """Change 1% of the records (every 100th from ``offset``), stamped by the real clock."""
    import httpx

    body = {"step": 100, "offset": offset, "wall_clock": True}
    return int(httpx.post(f"{url}/admin/touch", json=body).json()["touched"])


def mno_bench(url: str, n: int, page: int, db_url: str, label: str) -> dict[str, float]:
    name = mno_setup(url, page, db_url)
    i_time, counts = mno_run(name, db_url)
    rate = counts["created"] / i_time
    print(
        f"mno initial sync [{label}]: {i_time:.2f} s, {rate:,.0f} rec/s "
        f"({counts['created']} created, {counts['requests']} requests; "
        f"{RUN_CPU:.2f} s CPU in this process)  [{load()}]"
    )
    touched = touch(url, 0)
    before = stats(url)
    inc_time, inc = mno_run(name, db_url)
    made = stats(url) - before - 1  # the stats call itself
    print(
        f"mno incremental [{label}] after {touched} changes ({touched / n:.0%}): "
        f"{inc_time:.3f} s, {made} requests, {inc.get('updated', 0)} updated, "
        f"{inc.get('unchanged', 0)} unchanged"
    )
    # lookback 5m (the connector's): this pass reads the previous pass's window again
    touch(url, 1)
    lb5_time, lb5 = mno_run(name, db_url)
    # lookback 0s: one pass saves a cursor without the window, then the timed one
    set_lookback(url, page, db_url, "0s")
    mno_run(name, db_url)
    touch(url, 2)
    lb0_time, lb0 = mno_run(name, db_url)
    for label_lb, t, c in (("5m", lb5_time, lb5), ("0s", lb0_time, lb0)):
        print(
            f"mno incremental [{label}] lookback {label_lb}: {t:.3f} s, {c.get('fetched', 0)} "
            f"read, {c.get('updated', 0)} updated, {c.get('unchanged', 0)} unchanged, "
            f"{c.get('requests', 0)} requests"
        )
    return {
        "initial_s": i_time,
        "rate": rate,
        "incremental_s": inc_time,
        "requests": made,
        "lookback_5m_s": lb5_time,
        "lookback_0s_s": lb0_time,
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server URL")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are compared")
    parser.add_argument("--skip-dlt", action="store_true")
    args = parser.parse_args()
    n, page = args.records, args.page
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    d_time = d_n = 0.0
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
                    if not args.skip_dlt and rnd == args.rounds and i == 0:
                        # dlt reads an API of its own, unedited like the floor's
                        proc.terminate()
                        proc.wait()
                        proc, url = start_api(n, tmp / f"dlt-{rnd}")
                        d_time, d_n = dlt_run(url, page, tmp)
                        print(
                            f"dlt rest_api -> duckdb (incl. start-up): {d_time:.2f} s, "
                            f"{d_n / d_time:,.0f} rec/s ({d_n:.0f} rows)  [{load()}]"
                        )
                finally:
                    proc.terminate()
                    proc.wait()
        f_med = statistics.median(floors)
        print(f"--- medians of {args.rounds} rounds (ratios of medians) ---")
        print(f"floor: {f_med:.2f} s (rounds: {', '.join(f'{x:.2f}' for x in floors)})")
        if not args.skip_dlt:
            print(f"dlt: {d_time:.2f} s, {d_n / d_time:,.0f} rec/s (one run)")
        summary: dict[str, float] = {"floor_s": round(f_med, 3)}
        goals: list[tuple[str, bool]] = []
        for store, rs in runs.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}

            def rounds(key: str, rs: list[dict[str, float]] = rs) -> str:
                return ", ".join(f"{r[key]:.3f}" for r in rs)

            print(
                f"[{store}] initial {med['initial_s']:.2f} s ({med['rate']:,.0f} rec/s; "
                f"rounds: {rounds('initial_s')}), incremental {med['incremental_s']:.3f} s "
                f"(rounds: {rounds('incremental_s')}), {med['requests']:.0f} requests"
            )
            print(
                f"[{store}] incremental lookback 5m {med['lookback_5m_s']:.3f} s (rounds: "
                f"{rounds('lookback_5m_s')}), 0s {med['lookback_0s_s']:.3f} s (rounds: "
                f"{rounds('lookback_0s_s')})"
            )
            if not args.skip_dlt:
                ratio = med["rate"] / (d_n / d_time)
                ok = ratio >= 5
                goals.append((f"[{store}] initial >= 5x dlt", ok))
                print(
                    f"[{store}] initial throughput vs dlt: {ratio:.2f}x  (goal >= 5x: "
                    f"{verdict(ok)})"
                )
            slow = med["initial_s"] / f_med
            ok = slow <= 4
            goals.append((f"[{store}] initial <= 4x floor", ok))
            print(f"[{store}] initial time vs floor: {slow:.2f}x  (goal <= 4x: {verdict(ok)})")
            share = med["incremental_s"] / med["initial_s"]
            ok = share <= 0.03
            goals.append((f"[{store}] incremental <= 3% of initial", ok))
            print(f"[{store}] incremental / initial time: {share:.1%}  (goal <= 3%: {verdict(ok)})")
            extra = med["lookback_5m_s"] / med["lookback_0s_s"] - 1
            ok = extra <= 0.05
            goals.append((f"[{store}] lookback 5m <= 5% over 0s", ok))
            print(f"[{store}] lookback 5m vs 0s: {extra:+.1%} time  (goal <= +5%: {verdict(ok)})")
            summary.update({f"{store}_{k}": round(v, 3) for k, v in med.items() if k != "rate"})
        print("--- goals ---")
        for label, ok in goals:
            print(f"{verdict(ok)}  {label}")
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
