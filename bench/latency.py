"""Write-to-effect latency with the shipped agents config: what a user waits for.

For each store (PostgreSQL, SQLite file) the real agents daemon runs as a subprocess
(``mno agents run -f configs/agents.yaml --only dispatcher,provisioner``, the shipped
settings unchanged), and:

1. **event written → webhook received**: producer threads in this process write one
   ``tenant.updated`` event per transaction (``outbox.emit``) at a steady 10 and 200
   events/s (one thread per 25 events/s) and note the time each commit returned; a
   receiver in its own process (asyncio, HTTP/1.1 keep-alive, on 127.0.0.1) notes the
   arrival time of each POST. The latency of an event is arrival minus commit: p50, p95
   and p99 in ms.
2. **instance create → provisioner pickup**: ``instances.create`` commits, then this
   process polls the instance row (every 2 ms, on its own connection) until the
   provisioner's claim has taken it (``attempts`` or the lease set, or the row given
   back with a later ``next_attempt_at``). It measures the claim, not
   the Docker work: the platform's only host is an unreachable Docker endpoint, so
   nothing is started. The poll adds up to ~2 ms plus one query to each figure.

Goals on PostgreSQL: webhook p50 <= 50 ms and p99 <= 250 ms at 200 events/s; an instance
reaches the provisioner in <= 100 ms. The floor is the interval the agents would
otherwise wait for: without wake-ups a webhook waits up to the dispatcher's 1 s interval
(0.3-0.9 s measured) and an instance up to the provisioner's 5 s.

The load average is printed with the figures: on a shared machine they are worse than on
a quiet one.

Usage: python bench/latency.py [--quick] [--seconds 20] [--creates 30] [--pg URL]
       [--stores postgresql,sqlite] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _receiver import RequestProtocol  # bench/_receiver.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "configs" / "agents.yaml"
PG_SERVER = os.environ.get(
    "MNO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# -- the receiver ------------------------------------------------------------------------


def _receiver_main(port_q: Any) -> None:
    """POST: note (payload ``i``, arrival time); GET /stats: the arrivals; GET /reset."""
    arrivals: dict[int, float] = {}

    class Proto(RequestProtocol):
        def handle(self, line: list[str], body: bytes) -> None:
            if line[0] == "GET":
                payload = json.dumps({str(k): v for k, v in arrivals.items()}).encode()
                if line[1] == "/reset":
                    arrivals.clear()
            else:
                now = time.time()
                i = body.find(b'"i":')
                if i >= 0:
                    j = i + 4
                    while j < len(body) and body[j : j + 1].isdigit():
                        j += 1
                    arrivals.setdefault(int(body[i + 4 : j]), now)
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


def arrivals(base: str, reset: bool = False) -> dict[int, float]:
    import httpx

    got = httpx.get(base + ("reset" if reset else "stats"), timeout=30).json()
    return {int(k): float(v) for k, v in got.items()}


# -- stores ------------------------------------------------------------------------------


def fresh_pg(server: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"mno_bench_lat_{uuid.uuid4().hex[:8]}"
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
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def setup_store(url: str, target: str) -> None:
    from mno.store.db import get_engine, session_scope, upgrade
    from mno.tenancy import apps
    from mno.webhooks import endpoints

    upgrade(get_engine(url))
    with session_scope(url) as s:
        endpoints.add(s, target, events="tenant.updated")
        apps.create(
            s,
            "Web",
            code="web",
            stack="nex",
            access="any",
            image="mno-bench/absent:1",
            port=8080,
            health_path="/health",
            memory="64m",
            multi_instantiable=True,
        )


# -- the daemon ----------------------------------------------------------------------------


def start_agents(url: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(SHIPPED)]
        + ["--only", "dispatcher,provisioner"],
        env=dict(os.environ, MNO_DB_URL=url, NO_COLOR="1"),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def stop_agents(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """The daemon beats and its wake-up listener is up."""
    import sqlalchemy as sa

    from mno.store import wake
    from mno.store.db import session_scope

    postgres = url.startswith("postgresql")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the agents daemon exited with {proc.returncode}")
        with session_scope(url, write=False) as s:
            beats = s.execute(sa.text("SELECT count(*) FROM agent_heartbeat")).scalar_one()
            if postgres:
                listening = s.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'mno-agents %'"
                    )
                ).scalar_one()
            else:
                directory = wake.wake_dir(url)
                listening = int(directory is not None and any(directory.glob("*.sock")))
        if beats and listening:
            return
        time.sleep(0.2)
    raise SystemExit("the agents daemon did not start")


# -- measures ------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    v = sorted(values)
    if not v:
        return {"p50": None, "p95": None, "p99": None}

    def at(q: float) -> float:
        return round(v[min(len(v) - 1, int(len(v) * q))], 1)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99)}


def webhook_latency(url: str, base: str, rate: int, seconds: float, first: int) -> dict[str, Any]:
    """Events ``first..first+n`` at ``rate``/s, one per transaction; latency in ms."""
    from mno.store import outbox
    from mno.store.db import session_scope

    n = max(1, int(rate * seconds))
    arrivals(base, reset=True)
    written: dict[int, float] = {}
    writers = max(1, rate // 25)  # one commit takes a few ms: several writers keep the rate
    start = time.perf_counter()

    def writer(w: int) -> None:
        for k in range(w, n, writers):
            wait = start + k / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            with session_scope(url) as s:
                outbox.emit(s, "tenant.updated", {"i": first + k})
            written[first + k] = time.time()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    produced = n / (time.perf_counter() - start)
    deadline = time.monotonic() + 60
    got: dict[int, float] = {}
    while time.monotonic() < deadline:
        got = arrivals(base)
        if all(i in got for i in written):
            break
        time.sleep(0.2)
    lat = [(got[i] - t) * 1000 for i, t in written.items() if i in got]
    return {
        "events": n,
        "received": len(lat),
        "rate_asked": rate,
        "rate_written": round(produced, 1),
        **percentiles(lat),
    }


def pickup_latency(url: str, creates: int) -> dict[str, Any]:
    """``instances.create`` commit → the provisioner's claim, in ms."""
    import sqlalchemy as sa

    from mno.nex import instances
    from mno.store.db import get_engine, session_scope
    from mno.store.models.nex import Instance
    from mno.store.types import table_of
    from mno.tenancy import tenants

    t = table_of(Instance)
    keys = []
    with session_scope(url) as s:
        for _ in range(creates):
            key = f"t{uuid.uuid4().hex[:10]}"
            tenants.create(s, key, tier="pooled", status="active")
            keys.append(key)
    lat: list[float] = []
    missed = 0
    with get_engine(url).connect() as conn:
        for key in keys:
            with session_scope(url) as s:
                inst = instances.create(s, key, "web")
                inst_id, written = inst.id, (0, None, inst.next_attempt_at, inst.status)
            t0 = time.perf_counter()
            deadline = t0 + 30
            # the claim sets attempts and the lease; a pass that gives the item back at
            # once (the host is down) restores attempts but moves next_attempt_at on, so
            # any change of the four means the provisioner has taken it
            query = sa.select(t.c.attempts, t.c.lease_owner, t.c.next_attempt_at, t.c.status)
            query = query.where(t.c.id == inst_id)
            while True:
                row = tuple(conn.execute(query).one())
                conn.rollback()
                now = time.perf_counter()
                if row[0] or row[1] or row != written:
                    lat.append((now - t0) * 1000)
                    break
                if now > deadline:
                    missed += 1
                    break
                time.sleep(0.002)
            time.sleep(0.2)  # one at a time: the provisioner is idle again
    return {"creates": creates, "picked_up": len(lat), "missed": missed, **percentiles(lat)}


# what an event or an instance waits for without wake-ups: the shipped intervals
BASELINES = {"webhook": ("dispatcher interval (1s)", 1000.0), "provisioner": ("5s", 5000.0)}
GOALS = {"webhook_200.p50": 50.0, "webhook_200.p99": 250.0, "provisioner_pickup.p50": 100.0}


def figures_of(stores: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat figures for ``scripts/bench``: each with its baseline (the shipped interval
    the work would otherwise wait for) and the ratio to it (lower is better)."""
    out = []
    for store, figures in stores.items():
        for name, r in figures.items():
            base_name, base = BASELINES["provisioner" if name.startswith("prov") else "webhook"]
            for q in ("p50", "p95", "p99"):
                value = r.get(q)
                goal = GOALS.get(f"{name}.{q}") if store == "postgresql" else None
                out.append(
                    {
                        "name": f"latency.{store}.{name}.{q}",
                        "value": value,
                        "unit": "ms",
                        "better": "lower",
                        "baseline": base,
                        "baseline_name": f"polling: {base_name}",
                        "ratio": None if value is None else round(value / base, 4),
                        "goal": goal,
                    }
                )
    return out


def loadavg() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3 s per rate, 10 creates")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per rate")
    parser.add_argument("--rates", default="10,200")
    parser.add_argument("--creates", type=int, default=30)
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument("--pg", default=PG_SERVER)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    seconds, creates = (3.0, 10) if args.quick else (args.seconds, args.creates)
    rates = [int(r) for r in args.rates.split(",")]

    from cryptography.fernet import Fernet

    work = Path(tempfile.mkdtemp(prefix="mno-bench-lat-"))
    platform_yaml = work / "platform.yaml"
    # the only Docker host refuses connections: the provisioner claims, then backs off
    platform_yaml.write_text(
        "apps_domain: apps.test\nhosts:\n  - name: nowhere\n    base_url: tcp://127.0.0.1:9\n"
    )
    os.environ.update(
        MNO_HOME=str(work / "home"),
        MNO_CONFIG=str(platform_yaml),
        MNO_MASTER_KEY=Fernet.generate_key().decode(),
        MNO_WEBHOOKS_ALLOW_NETWORKS="127.0.0.0/8",
    )
    ctx = mp.get_context("spawn")
    port_q = ctx.Queue()
    rproc = ctx.Process(target=_receiver_main, args=(port_q,), daemon=True)
    rproc.start()
    port = port_q.get(timeout=30)
    base = f"http://127.0.0.1:{port}/"
    print(
        f"latency bench: shipped {SHIPPED.relative_to(ROOT)}, rates {rates} events/s "
        f"for {seconds:g} s each, {creates} creates; {os.cpu_count()} cpus; "
        f"load average {loadavg()}"
    )
    results: dict[str, Any] = {"load_start": loadavg(), "stores": {}}
    for store in args.stores.split(","):
        url = (
            fresh_pg(args.pg)
            if store == "postgresql"
            else f"sqlite:///{work / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        )
        proc = None
        try:
            setup_store(url, base + "hook")
            proc = start_agents(url, work / f"agents-{store}.log")
            wait_ready(url, proc)
            webhook_latency(url, base, 10, 0.3, 10_000_000)  # warm-up: connections, caches
            figures: dict[str, Any] = {}
            first = 0
            for rate in rates:
                r = webhook_latency(url, base, rate, seconds, first)
                first += r["events"]
                figures[f"webhook_{rate}"] = r
                print(
                    f"{store:10} webhook @ {rate:3}/s: p50 {r['p50']} ms, p95 {r['p95']} ms, "
                    f"p99 {r['p99']} ms ({r['received']}/{r['events']} received, "
                    f"written at {r['rate_written']}/s; load {loadavg()})"
                )
            p = pickup_latency(url, creates)
            figures["provisioner_pickup"] = p
            print(
                f"{store:10} instance create -> provisioner claim: p50 {p['p50']} ms, "
                f"p95 {p['p95']} ms, p99 {p['p99']} ms ({p['picked_up']}/{p['creates']}; "
                f"load {loadavg()})"
            )
            results["stores"][store] = figures
        finally:
            if proc is not None:
                stop_agents(proc)
            if store == "postgresql":
                drop_pg(args.pg, url)
    results["load_end"] = loadavg()
    results["figures"] = figures_of(results["stores"])
    print(f"load average at the end: {results['load_end']}")
    rproc.terminate()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
