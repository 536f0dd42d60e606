"""IDM authorize under a realistic mix: many apps' keys drawn from a Zipf distribution,
many tenants, half the requests about a tenant the app may not ask about.

The store holds ``--apps`` apps (10,000; ``--quick`` 1,000), each with a key and owned by
one of ``--tenants`` tenants (1,000; ``--quick`` 200), each tenant with one member and
that member's token. A request uses app key ``i`` with probability ∝ 1/i^s (Zipf,
``--zipf`` 1.1) and asks whether the owner tenant's member may read either the app's
owner tenant (allowed) or, half the time, another tenant (refused with 403: the app may
not ask about it). Requests are precomputed; the load generator (asyncio, keep-alive
connections) runs on one core and ``mno serve`` (one worker, uvicorn) on the other, on a
fresh PostgreSQL database. The mix is a fixed list of 50,000 requests (``--quick``
5,000), sent once to warm up and then in a loop while measured.

Figures: authorize/s with the answer cache on (``api.authorize_cache`` 1h, warmed by a
first pass over the mix) and off (0s: every answer computed, the key check still
cached), each against ``GET /healthz`` on the same server in the same run (the floor: what
the HTTP stack alone serves on that core).

    python3 bench/idm_mix.py [--quick] [--seconds 5] [--apps N] [--tenants N] [--json FILE]

Goals: ≥ 3,000 authorizations/s cached and ≥ 1,500/s cold on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import PG, free_port, load, request_bytes  # noqa: E402


def seed(url: str, n_apps: int, n_tenants: int) -> tuple[list[str], list[str], list[str]]:
    """(app Basic credentials, tenant keys, member tokens), index-aligned per tenant for
    the last two; app ``i`` is owned by tenant ``i % n_tenants``."""
    from mno.access import keys, members, tokens
    from mno.store import db
    from mno.tenancy import apps, tenants

    db.upgrade(db.get_engine(url))
    tkeys = [f"t{n:05d}" for n in range(n_tenants)]
    toks: list[str] = []
    with db.session_scope(url) as s:
        tenants.create_many(s, [{"key": k, "name": k} for k in tkeys])
    for start in range(0, n_tenants, 200):
        with db.session_scope(url) as s:
            for k in tkeys[start : start + 200]:
                members.add(s, k, f"u@{k}.test", "member")
                toks.append(tokens.create(s, f"u@{k}.test", ttl="1d").secret)
    creds: list[str] = []
    for start in range(0, n_apps, 500):
        chunk = range(start, min(n_apps, start + 500))
        with db.session_scope(url) as s:
            apps.create_many(
                s, [{"name": f"a{i:05d}", "owner": tkeys[i % n_tenants]} for i in chunk]
            )
            for i in chunk:
                issued = keys.rotate(s, f"a{i:05d}")
                raw = f"{issued.key.key_id}:{issued.secret}".encode()
                creds.append(base64.b64encode(raw).decode())
    db.dispose_all()
    return creds, tkeys, toks


def mix(
    creds: list[str], tkeys: list[str], toks: list[str], n: int, s: float, rng: random.Random
) -> list[bytes]:
    """``n`` requests: app by Zipf rank, half about a tenant the app may not ask about."""
    weights = [1 / (i + 1) ** s for i in range(len(creds))]
    order = list(range(len(creds)))
    rng.shuffle(order)  # which apps are popular has nothing to do with their index
    picks = rng.choices(order, weights=weights, k=n)
    out = []
    for i in picks:
        owner = i % len(tkeys)
        tenant = owner
        if rng.random() < 0.5:
            tenant = (owner + 1 + rng.randrange(len(tkeys) - 1)) % len(tkeys)
        body = {"token": toks[owner], "tenant": tkeys[tenant], "action": "read"}
        out.append(
            request_bytes("POST", "/v1/idm/authorize", body, {"Authorization": f"Basic {creds[i]}"})
        )
    return out


def start_server(home: Path, url: str, profile: str) -> tuple[subprocess.Popen[bytes], int]:
    """``mno serve``'s server on CPU 0 (waits up to a minute on a loaded machine)."""
    port = free_port()
    code = (
        "import os; os.sched_setaffinity(0, {0});"
        f"from mno.api import server; server.serve('127.0.0.1', {port})"
    )
    env = {**os.environ, "MNO_HOME": str(home), "MNO_DB_URL": url, "MNO_PROFILE": profile}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    for _ in range(1200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the API server did not start")


def send_once(port: int, requests: list[bytes], connections: int) -> None:
    """Send every request of the mix once (the warm-up: key checks, cached answers)."""
    queue = list(reversed(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                writer.write(queue.pop())
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":", 1)[1]))
        finally:
            writer.close()

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(connections)))

    asyncio.run(run())


def cycle(requests: list[bytes]) -> object:
    it = iter(range(10**12))
    return lambda: requests[next(it) % len(requests)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1,000 apps, 200 tenants, 3 s")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--apps", type=int, default=None)
    parser.add_argument("--tenants", type=int, default=None)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    n_apps = args.apps or (1_000 if args.quick else 10_000)
    n_tenants = args.tenants or (200 if args.quick else 1_000)
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"mno_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    procs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            limits = {"rate_limit": 10_000_000, "rate_burst": 10_000_000}
            (home / "config.yaml").write_text(
                json.dumps(
                    {
                        "profiles": {
                            "cached": {"api": {**limits, "authorize_cache": "1h"}},
                            "cold": {"api": {**limits, "authorize_cache": "0s"}},
                        }
                    }
                )
            )
            os.environ["MNO_HOME"] = str(home)
            os.environ["MNO_DB_URL"] = url
            creds, tkeys, toks = seed(url, n_apps, n_tenants)
            size = 5_000 if args.quick else 50_000
            requests = mix(creds, tkeys, toks, size, args.zipf, random.Random(26))
            health = request_bytes("GET", "/healthz", None, {})
            print(
                f"IDM mix: {n_apps} app keys (Zipf s={args.zipf}), {n_tenants} tenants, half "
                f"the requests refused; API on CPU 0, load on CPU 1, PostgreSQL, "
                f"{args.connections} connections, {seconds:g}s per figure; load average "
                f"{os.getloadavg()[0]:.2f}"
            )
            results: dict[str, float] = {}
            for profile in ("cached", "cold"):
                proc, port = start_server(home, url, profile)
                procs.append(proc)
                if profile == "cached":
                    rate, stats = load(port, lambda: health, seconds, args.connections, proc.pid)
                    results["healthz"] = rate
                    print(f"floor GET /healthz:           {rate:8.0f} req/s  {stats}")
                # warm up: every request of the mix once (key checks; cached: answers)
                send_once(port, requests, args.connections)
                rate, stats = load(port, cycle(requests), seconds, args.connections, proc.pid)
                results[profile] = rate
                print(f"IDM authorize mix, {profile:6}:   {rate:8.0f} req/s  {stats}")
                proc.terminate()
                proc.wait(10)
            base = results["healthz"]
            print(f"load average at the end: {os.getloadavg()[0]:.2f}")
            print(f"ratio cached/healthz {results['cached'] / base:.2f}")
            print(f"ratio cold/healthz   {results['cold'] / base:.2f}")
            print(f"goal 3000/s cached: {'met' if results['cached'] >= 3000 else 'NOT met'}")
            print(f"goal 1500/s cold:   {'met' if results['cold'] >= 1500 else 'NOT met'}")
            if args.json:
                figures = [
                    {
                        "name": f"idm_mix.{p}",
                        "value": round(results[p], 1),
                        "unit": "req/s",
                        "better": "higher",
                        "baseline": round(base, 1),
                        "baseline_name": "GET /healthz, same server and run",
                        "ratio": round(results[p] / base, 3),
                        "goal": goal,
                    }
                    for p, goal in (("cached", 3000), ("cold", 1500))
                ]
                Path(args.json).write_text(json.dumps({"figures": figures}, indent=2))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
