"""Claim throughput: items/s through claim → handle (no-op) → complete.

Measures, on one PostgreSQL database and one SQLite file made for the run:

- 1 and 2 worker processes on PostgreSQL, each looping ``leases.claim`` (FOR UPDATE SKIP
  LOCKED) and ``leases.complete`` in batches (two transactions per batch), and again with
  ``leases.complete_and_claim`` (one transaction per batch);
- the agent path for one PostgreSQL process: ``probe.tick`` through ``work_queue``, which
  also writes one side-effect row per item in the completing transaction;
- the daemon as shipped on PostgreSQL: ``mno agents run -f configs/agents.yaml --only
  probe`` over the same items, from its first side-effect row to its last;
- 1 worker process on SQLite (BEGIN IMMEDIATE), both ways;
- the floor per store: a hand-written ``UPDATE … WHERE id IN (SELECT … LIMIT n FOR UPDATE
  SKIP LOCKED) RETURNING id`` loop (no SKIP LOCKED on SQLite) over the same number of
  rows, in one process, with no lease bookkeeping.

Goals: >= 2,000 items/s for one PostgreSQL process; a second process adds >= 60%.

Usage: python bench/agents_claim.py [--items 50000] [--batch 500] [--pg URL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

PG_SERVER = os.environ.get(
    "MNO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _fresh_pg(server: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"mno_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def _drop_pg(server: str, url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def _prepare(url: str, items: int) -> None:
    import sqlalchemy as sa

    from mno.agents import probe
    from mno.store import db
    from mno.store.models.agents import ProbeItem

    engine = db.get_engine(url)
    if not db.is_sqlite(engine):
        db.upgrade(engine)
    with db.session_scope(url) as s:
        s.execute(sa.delete(ProbeItem))
        probe.enqueue(s, items)
    if not db.is_sqlite(engine):
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE agent_probe_item")
            conn.commit()


def _worker(url: str, batch: int, fused: bool, start_at: float, out: mp.Queue) -> None:
    from mno.store import leases
    from mno.store.db import session_scope
    from mno.store.models.agents import ProbeItem

    owner = f"bench:{os.getpid()}"
    done = 0
    with session_scope(url, write=False):
        pass  # connect and check the schema before the clock starts
    while time.time() < start_at:
        time.sleep(0.001)
    ids: list = []
    while True:
        if fused:  # complete the last batch and claim the next in one transaction
            with session_scope(url) as s:
                n, ids = leases.complete_and_claim(
                    s, ProbeItem, ids, owner, batch, timedelta(seconds=60)
                )
            done += n
            if not ids:
                break
            continue  # handle: a no-op
        with session_scope(url) as s:
            ids = leases.claim(s, ProbeItem, owner, batch, timedelta(seconds=60))
        if not ids:
            break
        # handle: a no-op
        with session_scope(url) as s:
            done += leases.complete(s, ProbeItem, ids, owner)
    out.put((done, time.time()))


def _tick_worker(url: str, batch: int, start_at: float, out: mp.Queue) -> None:
    """The agent path: ``probe.tick`` (work_queue, one side-effect row per item)."""
    from mno.agents import probe
    from mno.agents.base import TickContext
    from mno.store.db import session_scope

    with session_scope(url, write=False):
        pass
    while time.time() < start_at:
        time.sleep(0.001)
    done = 0
    while True:
        ctx = TickContext(agent="probe", db_url=url, batch_size=batch, concurrency=1)
        ctx.max_items = 10 * batch
        result = probe.tick(ctx)
        done += result.done
        if not result.claimed:
            break
    out.put((done, time.time()))


def run_ticks(url: str, batch: int) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 1.5
    proc = ctx.Process(target=_tick_worker, args=(url, batch, start_at, out))
    proc.start()
    done, ended = out.get(timeout=600)
    proc.join()
    return done, ended - start_at


def run_workers(url: str, processes: int, batch: int, fused: bool = False) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 1.5
    procs = [
        ctx.Process(target=_worker, args=(url, batch, fused, start_at, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    total = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results) - start_at
    return total, elapsed


def bare_loop(url: str, batch: int) -> tuple[int, float]:
    import sqlalchemy as sa

    from mno.store import db

    engine = db.get_engine(url)
    sqlite = db.is_sqlite(engine)
    pick = "SELECT id FROM agent_probe_item WHERE status = 'pending' LIMIT :n"
    if not sqlite:
        pick += " FOR UPDATE SKIP LOCKED"
    stmt = sa.text(f"UPDATE agent_probe_item SET status = 'done' WHERE id IN ({pick}) RETURNING id")
    done = 0
    start = time.perf_counter()
    while True:
        with engine.begin() as conn:
            rows = conn.execute(stmt, {"n": batch}).all()
        if not rows:
            break
        done += len(rows)
    return done, time.perf_counter() - start


def run_daemon(url: str, items: int) -> tuple[int, float]:
    """The daemon as shipped: ``mno agents run -f configs/agents.yaml --only probe`` (its
    batch size, concurrency and lease) over ``items`` pending probe items. Seconds from the
    first side-effect row to the last (process start-up excluded)."""
    import signal
    import subprocess
    import sys

    import sqlalchemy as sa

    from mno.store import db

    engine = db.get_engine(url)
    with engine.begin() as conn:  # the effects of earlier runs
        conn.execute(sa.text("DELETE FROM agent_probe_effect"))
    shipped = Path(__file__).resolve().parent.parent / "configs" / "agents.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(shipped), "--only", "probe"],
        env=dict(os.environ, MNO_DB_URL=url, NO_COLOR="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    count = sa.text("SELECT count(*) FROM agent_probe_item WHERE status = 'done'")
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            with engine.connect() as conn:
                if conn.execute(count).scalar_one() >= items:
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    with engine.connect() as conn:
        n, first, last = conn.execute(
            sa.text("SELECT count(*), min(created_at), max(created_at) FROM agent_probe_effect")
        ).one()
    if isinstance(first, str):
        from datetime import datetime

        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return int(n), max((last - first).total_seconds(), 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server URL")
    parser.add_argument("--quick", action="store_true", help="5,000 items (a laptop)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.items = 5_000
    figures: list[dict[str, object]] = []

    def figure(name: str, rate: float, floor: float) -> None:
        figures.append(
            {
                "name": f"agents_claim.{name}",
                "value": round(rate, 1),
                "unit": "items/s",
                "better": "higher",
                "baseline": round(floor, 1),
                "baseline_name": "bare UPDATE … RETURNING loop (SKIP LOCKED on PostgreSQL)",
                "ratio": round(rate / floor, 3),
                "goal": None,
            }
        )

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MNO_HOME"] = tmp
        pg = _fresh_pg(args.pg)
        try:
            print(f"{args.items:,} items, batches of {args.batch}")
            _prepare(pg, args.items)
            n, secs = bare_loop(pg, args.batch)
            pg_floor = n / secs
            print(f"PostgreSQL bare UPDATE … RETURNING loop: {pg_floor:,.0f} items/s")
            for fused, label in ((False, "claim + complete"), (True, "fused complete+claim")):
                rates = {}
                for procs in (1, 2):
                    _prepare(pg, args.items)
                    n, secs = run_workers(pg, procs, args.batch, fused)
                    assert n == args.items, (n, args.items)
                    rates[procs] = n / secs
                    figure(
                        f"postgresql.{'fused' if fused else 'claim'}.{procs}p", n / secs, pg_floor
                    )
                    print(
                        f"PostgreSQL, {label}, {procs} process(es): {rates[procs]:,.0f} items/s "
                        f"(ratio to bare loop {rates[procs] / pg_floor:.2f})"
                    )
                print(
                    f"  second process adds {(rates[2] / rates[1] - 1) * 100:.0f}% "
                    f"(goal >= 60%); one process goal >= 2,000 items/s"
                )
            _prepare(pg, args.items)
            n, secs = run_ticks(pg, args.batch)
            assert n == args.items, (n, args.items)
            figure("postgresql.probe_tick", n / secs, pg_floor)
            print(
                f"PostgreSQL, probe agent tick (work_queue + a side-effect row per item), "
                f"1 process: {n / secs:,.0f} items/s (ratio to bare loop {n / secs / pg_floor:.2f})"
            )
            _prepare(pg, args.items)
            n, secs = run_daemon(pg, args.items)
            figure("postgresql.daemon", n / secs, pg_floor)
            print(
                f"PostgreSQL, daemon with the shipped configs/agents.yaml (`mno agents run "
                f"--only probe`), first to last item: {n / secs:,.0f} items/s "
                f"(ratio to bare loop {n / secs / pg_floor:.2f}; {n:,} items handled)"
            )
        finally:
            from mno.store import db

            db.dispose_all()
            _drop_pg(args.pg, pg)

        sqlite = f"sqlite:///{Path(tmp) / 'bench.db'}"
        _prepare(sqlite, args.items)
        n, secs = bare_loop(sqlite, args.batch)
        sqlite_floor = n / secs
        print(f"SQLite bare UPDATE … RETURNING loop: {sqlite_floor:,.0f} items/s")
        for fused, label in ((False, "claim + complete"), (True, "fused complete+claim")):
            _prepare(sqlite, args.items)
            n, secs = run_workers(sqlite, 1, args.batch, fused)
            assert n == args.items, (n, args.items)
            rate = n / secs
            figure(f"sqlite.{'fused' if fused else 'claim'}.1p", rate, sqlite_floor)
            print(
                f"SQLite, {label}, 1 process: {rate:,.0f} items/s "
                f"(ratio to bare loop {rate / sqlite_floor:.2f})"
            )

    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures}, indent=1))


if __name__ == "__main__":
    main()
