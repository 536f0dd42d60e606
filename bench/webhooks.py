"""Webhook delivery throughput and latency, against same-run baselines.

A fast local receiver (asyncio, HTTP/1.1 keep-alive, its own process) counts requests and
the event-to-delivery latency (arrival time minus the body's event ``timestamp``).
Measured, one after another:

1. bare loop: ``concurrency`` threads, each with a keep-alive httpx.Client, posting N
   pre-built bodies signed in the loop, no store: the baseline of the ratios (an
   AsyncClient with the same concurrency is printed for reference; it is slower here).
   The dispatcher posts through httpcore, the layer under httpx, which costs less CPU per
   request; a bare httpcore loop is printed too, and the ratio to it is the store's cost;
2. mno dispatcher on SQLite and on PostgreSQL: N events emitted first, then the dispatcher
   agent's ``tick`` looped in this process until every delivery succeeded. deliveries/s is
   wall time from the first tick (fan-out included) to the last delivery recorded;
   latency here is backlog latency (events waited in the queue);
3. mno dispatcher on PostgreSQL, live: a producer process emits events at a steady rate
   while the dispatcher runs; p50/p95 event-to-delivery latency;
4. Celery 5 worker (threads pool, same concurrency) with the Redis broker on
   127.0.0.1:6379, each task posting one signed body: tasks are enqueued first, the rate is
   first-to-last arrival at the receiver (worker start-up and enqueueing excluded).

5. the daemon as shipped on PostgreSQL: ``mno agents run -f configs/agents.yaml --only
   dispatcher`` (its concurrency and batch size, woken by the events), N events written
   once it is ready; the rate from the first event written to the last delivery.

The floor is the bare httpcore loop: the same signed events through the same transport
at the same concurrency, without a store. Goals: >= 1,500 deliveries/s on PostgreSQL;
>= 70% of the bare httpcore loop; >= 2x Celery.

Usage: python bench/webhooks.py [--events 20000] [--concurrency 16] [--batch 1000]
       [--pg URL] [--skip-celery]   (Celery: pip install celery redis; not a runtime dep)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from _receiver import RequestProtocol  # bench/_receiver.py, beside this script

PG_SERVER = os.environ.get(
    "MNO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# -- the receiver ------------------------------------------------------------------------


def _receiver_main(port_q: Any) -> None:
    stats: dict[str, Any] = {"count": 0, "lat": [], "first": None, "last": None}

    class Proto(RequestProtocol):
        def handle(self, line: list[str], body: bytes) -> None:
            if line[0] == "GET":
                lat = sorted(stats["lat"])
                out = {
                    "count": stats["count"],
                    "first": stats["first"],
                    "last": stats["last"],
                    "p50": lat[len(lat) // 2] if lat else None,
                    "p95": lat[int(len(lat) * 0.95)] if lat else None,
                }
                if line[1] == "/reset":
                    stats.update(count=0, lat=[], first=None, last=None)
                payload = json.dumps(out).encode()
            else:
                now = time.time()
                stats["count"] += 1
                stats["first"] = stats["first"] or now
                stats["last"] = now
                i = body.find(b'"timestamp":"')
                if i >= 0:
                    ts = body[i + 13 : body.find(b'"', i + 13)].decode()
                    at = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                    stats["lat"].append(now - at)
                payload = b"ok"
            self.t.write(
                b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\ncontent-type: text/plain\r\n\r\n%s"
                % (len(payload), payload)
            )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, "127.0.0.1", 0, backlog=1024)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def receiver_stats(url: str, reset: bool = False) -> dict[str, Any]:
    import httpx

    return httpx.get(url + ("reset" if reset else "stats"), timeout=30).json()


# -- stores ---------------------------------------------------------------------------------


def fresh_pg(server: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"mno_bench_wh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


def drop_pg(server: str, url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from mno.store.db import dispose_all

    dispose_all()
    name = make_url(url).database
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def setup_store(url: str, target: str) -> str:
    from mno.store.db import get_engine, session_scope, upgrade
    from mno.webhooks import endpoints

    upgrade(get_engine(url))
    with session_scope(url) as s:
        e = endpoints.add(s, target, events="tenant.*")
        return str(e.id)


def emit(url: str, n: int, chunk: int = 2000) -> None:
    from mno.store import outbox
    from mno.store.db import session_scope

    done = 0
    while done < n:
        k = min(chunk, n - done)
        with session_scope(url) as s:
            outbox.emit_many(
                s, [("tenant.updated", {"i": done + j, "pad": "x" * 200}, None) for j in range(k)]
            )
        done += k


def succeeded(url: str) -> int:
    import sqlalchemy as sa

    from mno.store.db import session_scope

    with session_scope(url, write=False) as s:
        return int(
            s.execute(
                sa.text("select count(*) from webhook_delivery where status = 'succeeded'")
            ).scalar_one()
        )


def run_dispatcher(url: str, total: int, concurrency: int, batch: int) -> float:
    from mno.agents import dispatcher
    from mno.agents.base import TickContext

    ctx = TickContext(
        agent="dispatcher",
        db_url=url,
        batch_size=batch,
        concurrency=concurrency,
        options=dict(dispatcher.DEFAULT_OPTIONS),
    )
    start = time.perf_counter()
    done = 0
    while done < total:
        res = dispatcher.tick(ctx)
        done += res.done
        if res.claimed == 0:
            time.sleep(0.02)
            done = succeeded(url)
    return time.perf_counter() - start


def _producer(url: str, total: int, rate: int) -> None:
    from mno.store.db import dispose_all

    dispose_all()
    step = max(1, rate // 20)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        k = min(step, total - sent)
        emit(url, k, chunk=k)
        sent += k
        wait = start + sent / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)


# -- bare loop --------------------------------------------------------------------------------


def _bodies(n: int) -> list[tuple[str, str]]:
    from mno import clock
    from mno.webhooks.fanout import body_for

    return [
        (str(uuid.uuid4()), body_for("tenant.updated", clock.now(), {"i": i, "pad": "x" * 200}))
        for i in range(n)
    ]


def bare_loop(target: str, n: int, concurrency: int) -> float:
    """Threads with one keep-alive httpx.Client each (the fastest plain httpx shape here)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from mno import signing

    secret = signing.new_secret()
    bodies = _bodies(n)
    local = threading.local()

    def one(item: tuple[str, str]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client()
        hdrs = signing.headers([secret], item[0], int(time.time()), item[1])
        hdrs["content-type"] = "application/json"
        client.post(target, content=item[1].encode(), headers=hdrs).raise_for_status()

    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        list(pool.map(one, bodies))
        return time.perf_counter() - start


def bare_core(target: str, n: int, concurrency: int) -> float:
    """Like ``bare_loop`` but through httpcore from byte headers, the transport the
    dispatcher uses: the ceiling for mno's own client, so the ratio to it is the cost of
    the store (fan-out, claims, records)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpcore

    from mno import signing

    secret = signing.new_secret()
    bodies = _bodies(n)
    local = threading.local()
    url = httpcore.URL(target)

    def one(item: tuple[str, str]) -> None:
        pool = getattr(local, "pool", None)
        if pool is None:
            pool = local.pool = httpcore.ConnectionPool()
        body = item[1].encode()
        hdrs = [(b"host", url.host), (b"content-type", b"application/json")]
        hdrs += [(b"content-length", str(len(body)).encode())]
        signed = signing.headers([secret], item[0], int(time.time()), body)
        hdrs += [(k.encode(), v.encode()) for k, v in signed.items()]
        resp = pool.request("POST", url, headers=hdrs, content=body)
        assert resp.status == 200

    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        list(pool.map(one, bodies))
        return time.perf_counter() - start


def bare_async(target: str, n: int, concurrency: int) -> float:
    """One httpx.AsyncClient, ``concurrency`` requests in flight (for reference)."""
    import httpx

    from mno import signing

    secret = signing.new_secret()
    bodies = _bodies(n)

    async def main() -> float:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits) as client:
            sem = asyncio.Semaphore(concurrency)

            async def one(mid: str, body: str) -> None:
                async with sem:
                    hdrs = signing.headers([secret], mid, int(time.time()), body)
                    hdrs["content-type"] = "application/json"
                    r = await client.post(target, content=body.encode(), headers=hdrs)
                    r.raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(one(m, b) for m, b in bodies))
            return time.perf_counter() - start

    return asyncio.run(main())


# -- celery -------------------------------------------------------------------------------------

CELERY_APP = """
import httpx, os
from celery import Celery
app = Celery("whbench", broker="redis://127.0.0.1:6379/0")
app.conf.update(task_default_queue=os.environ["WH_QUEUE"], task_ignore_result=True,
                worker_prefetch_multiplier=4, broker_connection_retry_on_startup=True)
_client = httpx.Client(limits=httpx.Limits(max_connections=128, max_keepalive_connections=128))

@app.task(name="post")
def post(url, body, headers):
    _client.post(url, content=body.encode(), headers=headers).raise_for_status()
"""


def celery_run(target: str, stats_url: str, n: int, concurrency: int) -> float | None:
    try:
        import celery  # noqa: F401
        import redis
    except ImportError:
        return None
    from mno import clock, signing
    from mno.webhooks.fanout import body_for

    tmp = Path(tempfile.mkdtemp())
    (tmp / "whbench_tasks.py").write_text(CELERY_APP)
    queue = f"mno_wh_bench_{uuid.uuid4().hex[:8]}"
    os.environ["WH_QUEUE"] = queue
    sys.path.insert(0, str(tmp))
    import whbench_tasks  # type: ignore[import-not-found]

    secret = signing.new_secret()
    enq = time.perf_counter()
    for i in range(n):
        mid = str(uuid.uuid4())
        body = body_for("tenant.updated", clock.now(), {"i": i, "pad": "x" * 200})
        hdrs = signing.headers([secret], mid, int(time.time()), body)
        hdrs["content-type"] = "application/json"
        whbench_tasks.post.apply_async((target, body, hdrs))
    print(f"  celery: enqueued {n} tasks in {time.perf_counter() - enq:.1f}s")
    receiver_stats(stats_url, reset=True)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "whbench_tasks",
            "worker",
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
        cwd=tmp,
        env=dict(os.environ, PYTHONPATH=str(tmp)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        st = receiver_stats(stats_url)
        while st["count"] < n and time.monotonic() < deadline:
            time.sleep(0.5)
            st = receiver_stats(stats_url)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.Redis(host="127.0.0.1", port=6379, db=0).delete(queue)
    if st["count"] < n:
        return None
    return st["last"] - st["first"]


# -- main ---------------------------------------------------------------------------------------


def daemon_drain(url: str, stats_url: str, n: int) -> float:
    """The daemon as shipped: ``mno agents run -f configs/agents.yaml --only dispatcher``
    (its concurrency, batch size and wake-ups), started and ready first; seconds from the
    first of ``n`` events written to the ``n``-th delivery received."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from latency import SHIPPED, stop_agents, wait_ready  # bench/latency.py, beside this

    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(SHIPPED), "--only", "dispatcher"],
        env=dict(os.environ, MNO_DB_URL=url, NO_COLOR="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(url, proc)
        time.sleep(1.0)  # its start-up pass is over
        receiver_stats(stats_url, reset=True)
        start = time.perf_counter()
        emit(url, n)
        deadline = time.monotonic() + 600
        while receiver_stats(stats_url)["count"] < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return time.perf_counter() - start
    finally:
        stop_agents(proc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--live-events", type=int, default=5000)
    parser.add_argument("--live-rate", type=int, default=1000)
    parser.add_argument("--pg", default=PG_SERVER)
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="3,000 events, 1,000 live, no Celery (a laptop)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.events, args.live_events, args.skip_celery = 3000, 1000, True
    n = args.events

    from cryptography.fernet import Fernet

    home = tempfile.mkdtemp()
    os.environ.update(
        MNO_HOME=home,
        MNO_MASTER_KEY=Fernet.generate_key().decode(),
        MNO_WEBHOOKS_ALLOW_NETWORKS="127.0.0.0/8",
    )
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    rproc = ctx.Process(target=_receiver_main, args=(port_q,), daemon=True)
    rproc.start()
    port = port_q.get(timeout=30)
    target = f"http://127.0.0.1:{port}/hook"
    stats_url = f"http://127.0.0.1:{port}/"
    print(
        f"webhooks bench: {n} events, concurrency {args.concurrency}, batch {args.batch}, "
        f"{os.cpu_count()} cpus"
    )

    bare_s = bare_loop(target, n, args.concurrency)
    bare = n / bare_s
    print(
        f"bare httpx loop:        {bare:8.0f} deliveries/s ({bare_s:.2f}s; {args.concurrency} "
        "threads, one keep-alive httpx.Client each; the baseline for the ratios)"
    )
    core_s = bare_core(target, n, args.concurrency)
    core = n / core_s
    print(
        f"bare httpcore loop:     {core:8.0f} deliveries/s ({core_s:.2f}s; the same threads "
        "through httpcore, the dispatcher's transport; reference)"
    )
    m = min(n, 5000)
    asy = m / bare_async(target, m, args.concurrency)
    print(
        f"bare httpx async:       {asy:8.0f} deliveries/s ({m} posts, one AsyncClient; reference)"
    )

    results: dict[str, float] = {}
    for store in ("sqlite", "postgresql"):
        if store == "sqlite":
            url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
        else:
            url = fresh_pg(args.pg)
        try:
            setup_store(url, target)
            emit(url, n)
            receiver_stats(stats_url, reset=True)
            secs = run_dispatcher(url, n, args.concurrency, args.batch)
            st = receiver_stats(stats_url)
            rate = n / secs
            results[store] = rate
            print(
                f"mno {store:<10} drain:  {rate:8.0f} deliveries/s ({secs:.2f}s, "
                f"{st['count']} received); backlog latency p50 {st['p50']:.2f}s "
                f"p95 {st['p95']:.2f}s; {rate / bare:.0%} of bare loop"
            )
            if store == "postgresql":
                receiver_stats(stats_url, reset=True)
                live = args.live_events
                prod = ctx.Process(target=_producer, args=(url, live, args.live_rate))
                prod.start()
                run_dispatcher(url, n + live, args.concurrency, args.batch)
                prod.join()
                st = receiver_stats(stats_url)
                print(
                    f"mno postgresql live:    {live} events at {args.live_rate}/s: "
                    f"event-to-delivery p50 {st['p50'] * 1000:.0f} ms, "
                    f"p95 {st['p95'] * 1000:.0f} ms"
                )
                dsecs = daemon_drain(url, stats_url, n)
                results["daemon"] = n / dsecs
                print(
                    f"mno postgresql daemon:  {n / dsecs:8.0f} deliveries/s ({dsecs:.2f}s; "
                    "`mno agents run` with the shipped configs/agents.yaml, events written "
                    f"after it was ready); {n / dsecs / core:.0%} of bare httpcore loop"
                )
        finally:
            if store == "postgresql":
                drop_pg(args.pg, url)
            else:
                from mno.store.db import dispose_all

                dispose_all()

    cel = 0.0
    if not args.skip_celery:
        secs = celery_run(target, stats_url, n, args.concurrency)
        if secs is None:
            print("celery: not measured (pip install celery redis; Redis on 127.0.0.1:6379)")
        else:
            cel = n / secs
            print(f"celery threads+redis:   {cel:8.0f} deliveries/s ({secs:.2f}s first-to-last)")
            for store, rate in results.items():
                print(f"ratio mno {store} / celery: {rate / cel:.2f}x")
    for store, rate in results.items():
        print(f"ratio mno {store} / bare loop: {rate / bare:.2f}")
        print(f"ratio mno {store} / bare httpcore loop: {rate / core:.2f}")
    pg = results.get("postgresql", 0)
    if args.json:
        figures = [
            {
                "name": f"webhooks.{'postgresql.daemon' if store == 'daemon' else store}.drain",
                "value": round(rate, 1),
                "unit": "deliveries/s",
                "better": "higher",
                "baseline": round(core, 1),
                "baseline_name": "bare httpcore loop, same concurrency",
                "ratio": round(rate / core, 3),
                "goal": round(0.7 * core, 1) if store != "sqlite" else None,
            }
            for store, rate in results.items()
        ]
        Path(args.json).write_text(json.dumps({"figures": figures}, indent=1))
    print(f"goals: pg >= 1500/s: {'met' if pg >= 1500 else 'NOT met'}")
    print(f"goals: pg >= 70% of bare httpcore loop: {'met' if pg >= 0.7 * core else 'NOT met'}")
    if cel:
        print(f"goals: pg >= 2x celery: {'met' if pg >= 2 * cel else 'NOT met'}")
    rproc.terminate()


if __name__ == "__main__":
    main()
