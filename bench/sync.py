"""Connec sync throughput: 100,000 records from a local paginated API, 500 per page.

Measures, in one run against the same API (served by a separate process):

- floor: a bare loop that fetches and parses every page and stores nothing;
- mno initial sync (records/s) into a fresh store: SQLite, PostgreSQL (a fresh database
  on the server of ``MNO_TEST_PG_URL`` or ``--pg``) or both (``--store``, default both);
- mno incremental sync after 1% of the records change (time and requests);
- what the lost-update protection costs: the incremental lookback (default ``5m``) makes
  each pass read again what changed in the window before the previous pass started.
  The incremental passes run on a simulated clock one poll interval (1 h, the poller's
  default) apart, with 1% of the records changed evenly over each interval; passes
  with ``lookback: 5m`` and with ``lookback: 0s`` are timed in turns (each after an
  untimed pass with the same lookback, which saves the cursor that lookback gives);
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
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FLOOR_CPU = RUN_CPU = 0.0  # CPU seconds of this process (all threads) in the last one
LOOKBACK_PAIRS = 3  # timed passes per lookback, per store and round
POLL_INTERVAL = timedelta(hours=1)  # the poller's default interval per connection
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


def touch(url: str, offset: int, at: datetime) -> int:
    """Change 1% of the records (every 100th from ``offset``), stamped evenly over the
    poll interval before ``at``."""
    import httpx

    span = [(at - POLL_INTERVAL).isoformat(), at.isoformat()]
    body = {"step": 100, "offset": offset, "between": span}
    return int(httpx.post(f"{url}/admin/touch", json=body).json()["touched"])


def mno_bench(url: str, n: int, page: int, db_url: str, label: str) -> dict[str, float]:
    from mno import clock

    name = mno_setup(url, page, db_url)
    i_time, counts = mno_run(name, db_url)
    rate = counts["created"] / i_time
    print(
        f"mno initial sync [{label}]: {i_time:.2f} s, {rate:,.0f} rec/s "
        f"({counts['created']} created, {counts['requests']} requests; "
        f"{RUN_CPU:.2f} s CPU in this process)  [{load()}]"
    )
    # the incremental passes run on a simulated clock, one poll interval apart
    at = clock.now().replace(microsecond=0) + timedelta(days=1)
    try:
        touched = touch(url, 0, at)
        clock.set_now(at)
        before = stats(url)
        inc_time, inc = mno_run(name, db_url)
        made = stats(url) - before - 1  # the stats call itself
        print(
            f"mno incremental [{label}] after {touched} changes ({touched / n:.0%}): "
            f"{inc_time:.3f} s, {made} requests, {inc.get('updated', 0)} updated, "
            f"{inc.get('unchanged', 0)} unchanged"
        )
        lb = lookback_pairs(url, page, db_url, name, label, at)
    finally:
        clock.set_now(None)
    return {
        "initial_s": i_time,
        "rate": rate,
        "incremental_s": inc_time,
        "requests": made,
        "lookback_5m_s": statistics.median(lb["5m"]),
        "lookback_0s_s": statistics.median(lb["0s"]),
        "lookback_5m_read": statistics.median(lb["5m_read"]),
        "lookback_0s_read": statistics.median(lb["0s_read"]),
    }


def lookback_pairs(
    url: str, page: int, db_url: str, name: str, label: str, at: datetime
) -> dict[str, list[float]]:
    """Incremental passes with lookback 5m and 0s, in turns, each one poll interval after
    the one before, with 1% of the records changed over that interval. Before each timed
    pass, an untimed one with the same lookback saves the cursor that lookback gives, so
    that the timed 5m pass also reads again the changes of the 5 minutes before it."""
    from mno import clock

    out: dict[str, list[float]] = {"5m": [], "0s": [], "5m_read": [], "0s_read": []}
    offset = 1
    for _ in range(LOOKBACK_PAIRS):
        for lookback in ("5m", "0s"):
            set_lookback(url, page, db_url, lookback)
            for _ in range(2):  # an untimed pass, then the timed one
                at += POLL_INTERVAL
                touch(url, offset, at)
                offset += 1
                clock.set_now(at)
                took, c = mno_run(name, db_url)
            out[lookback].append(took)
            out[f"{lookback}_read"].append(float(c.get("fetched", 0)))
            print(
                f"mno incremental [{label}] lookback {lookback}: {took:.3f} s, "
                f"{c.get('fetched', 0)} read, {c.get('updated', 0)} updated, "
                f"{c.get('unchanged', 0)} unchanged, {c.get('requests', 0)} requests"
            )
    set_lookback(url, page, db_url, "5m")
    return out


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
