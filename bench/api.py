"""Hub API: tenant reads at a fixed rate over 100k tenants, IDM authorize (cached and
uncached) and Developer API usage posts.

The API runs under uvicorn in a child process pinned to one core (CPU 0) on a fresh
PostgreSQL database; the load generator (asyncio, keep-alive connections) runs on the
other core.

Tenant reads (``GET /v1/hub/tenants/{key}`` and list pages of 50 from a random cursor,
as a platform operator, over ``--tenants`` tenants) are sent open-loop at ``--rate``
requests/s: each request's latency runs from the moment it was due, so a slow answer
also delays the ones queued behind it. The floor is a bare Starlette app doing the same
queries (``bench/_bare_hub.py``) on the same core in the same run; the ratios compare
p99s, and the closed-loop GET rates.

The authorize and usage figures compare with ``GET /healthz`` on the same server in the
same run, so the ratios say how much of a no-op route's rate each call keeps.

    python3 bench/api.py [--seconds 5] [--connections 32] [--rate 300] [--tenants 100000]

Goals (2 cores, PostgreSQL): p99 <= 25 ms at 300 req/s for GET and list, >= 60% of the
bare app's GET rate, 3,000 authorize/s cached, 500 usage posts/s persisted.
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
from typing import Any

PG = os.environ.get("MNO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(home: Path, url: str, tenant_count: int) -> dict[str, str]:
    os.environ["MNO_HOME"] = str(home)
    os.environ["MNO_DB_URL"] = url
    from mno.access import keys, members, tokens
    from mno.store import db
    from mno.tenancy import apps, tenants

    db.upgrade(db.get_engine(url))
    with db.session_scope(url) as s:
        tenants.create(s, "acme", name="Acme")
        apps.create(s, "CRM", code="crm", owner="acme")
        members.add(s, "acme", "bob@acme.io", "member")
        key = keys.rotate(s, "crm")
        token = tokens.create(s, "bob@acme.io", ttl="1d")
        members.add(s, "system", "op@platform.io", "super_admin")
        op = tokens.create(s, "op@platform.io", ttl="1d")
        try:
            from mno.store.models.billing import BillingMetric

            s.add(BillingMetric(code="api_calls", name="API calls"))
        except ImportError:
            pass
    chunk = 10_000
    for start in range(0, tenant_count, chunk):
        with db.session_scope(url) as s:
            items = [
                {"key": tenant_key(i), "name": f"Tenant {i}", "domains": [f"t{i}.example.com"]}
                for i in range(start, min(start + chunk, tenant_count))
            ]
            tenants.create_many(s, items)
    with db.get_engine(url).connect() as conn:
        conn.exec_driver_sql("ANALYZE")
    db.dispose_all()
    auth = base64.b64encode(f"{key.key.key_id}:{key.secret}".encode()).decode()
    return {"auth": auth, "token": token.secret, "op": op.secret}


def tenant_key(i: int) -> str:
    return f"t-{i:06d}"


def start_bare(url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    script = Path(__file__).with_name("_bare_hub.py")
    proc = subprocess.Popen([sys.executable, str(script), str(port), url])
    wait_listening(proc, port)
    return proc, port


def wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start")


def start_server(home: Path, url: str, profile: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    code = (
        "import os; os.sched_setaffinity(0, {0});"
        f"from mno.api import server; server.serve('127.0.0.1', {port})"
    )
    env = {**os.environ, "MNO_HOME": str(home), "MNO_DB_URL": url, "MNO_PROFILE": profile}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    wait_listening(proc, port)
    return proc, port


def request_bytes(method: str, path: str, body: dict | None, headers: dict[str, str]) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> int:
    """Send one request, read its whole answer; the status code."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def _worker(port: int, make: object, until: float, stats: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            status = await _exchange(reader, writer, make())  # type: ignore[operator]
            stats[str(status)] = stats.get(str(status), 0) + 1
    finally:
        writer.close()


def fixed_rate(
    port: int, make: Any, rate: float, seconds: float, connections: int
) -> tuple[float, float, dict[str, int]]:
    """Open loop: ``rate`` requests/s for ``seconds`` over a pool of keep-alive
    connections; (p50 ms, p99 ms, statuses), each latency counted from when the request
    was due (a request waiting for a free connection waits on the clock)."""

    async def run() -> tuple[list[float], dict[str, int]]:
        loop = asyncio.get_running_loop()
        pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(connections):
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        latencies: list[float] = []
        stats: dict[str, int] = {}

        async def one(due: float) -> None:
            reader, writer = await pool.get()
            try:
                status = await _exchange(reader, writer, make())
            finally:
                pool.put_nowait((reader, writer))
            latencies.append((loop.time() - due) * 1000)
            stats[str(status)] = stats.get(str(status), 0) + 1

        start = loop.time() + 0.05
        tasks = []
        for i in range(int(rate * seconds)):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due)))
        await asyncio.gather(*tasks)
        while not pool.empty():
            pool.get_nowait()[1].close()
        return latencies, stats

    latencies, stats = asyncio.run(run())
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return p50, p99, stats


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    port: int, make: object, seconds: float, connections: int, pid: int | None = None
) -> tuple[float, dict]:
    """Requests/s over ``seconds``; with ``pid``, stats gain the server's CPU ms/request."""

    async def run() -> tuple[float, dict]:
        stats: dict[str, int] = {}
        start = time.monotonic()
        until = start + seconds
        await asyncio.gather(*(_worker(port, make, until, stats) for _ in range(connections)))
        elapsed = time.monotonic() - start
        return sum(stats.values()) / elapsed, stats

    before = cpu_seconds(pid) if pid else 0.0
    rate, stats = asyncio.run(run())
    if pid:
        done = sum(stats.values())
        stats = {**stats, "cpu_ms": round(1000 * (cpu_seconds(pid) - before) / max(done, 1), 3)}
    return rate, stats


def usage_requests(headers: dict[str, str], prefix: str = "u") -> Any:
    """A maker of usage posts, each with its own Idempotency-Key."""
    counter = iter(range(10**9))

    def make() -> bytes:
        body = {"tenant": "acme", "metric": "api_calls", "quantity": "1"}
        return request_bytes(
            "POST",
            "/v1/dev/usage",
            body,
            {**headers, "Idempotency-Key": f"{prefix}{next(counter)}"},
        )

    return make


def usage_rows(url: str) -> int:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM billing_usage_event").scalar())
    finally:
        engine.dispose()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def tenant_reads(
    home: Path, url: str, op_token: str, args: Any, procs: list[subprocess.Popen[bytes]]
) -> dict[str, float]:
    """GET one tenant and list pages at a fixed rate, then the closed-loop GET rate: on
    the API (profile ``cached``), then on the bare app. Prints a line per figure."""
    auth = {"Authorization": f"Bearer {op_token}"}
    rng = random.Random(7)

    def get(prefix: str) -> Any:
        return lambda: request_bytes(
            "GET", f"{prefix}/{tenant_key(rng.randrange(args.tenants))}", None, auth
        )

    def page(prefix: str) -> Any:
        def make() -> bytes:
            after = tenant_key(rng.randrange(args.tenants))
            return request_bytes("GET", f"{prefix}?limit=50&cursor={after}", None, auth)

        return make

    out: dict[str, float] = {}
    print(
        f"tenant reads: {args.tenants} tenants, open loop at {args.rate:g} req/s for "
        f"{args.seconds:g}s, list pages of 50 from a random cursor; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    for label, tag, start, prefix in (
        ("mno  ", "", lambda: start_server(home, url, "cached"), "/v1/hub/tenants"),
        ("bare ", "bare_", lambda: start_bare(url), "/tenants"),
    ):
        proc, port = start()
        procs.append(proc)
        try:
            load(port, get(prefix), 1.0, 8)  # warm up
            for name, make in (("get", get(prefix)), ("list", page(prefix))):
                p50, p99, stats = fixed_rate(port, make, args.rate, args.seconds, 64)
                out[f"{tag}{name}_p99"] = p99
                print(
                    f"{label}{name:4} at {args.rate:g}/s: "
                    f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  {stats}"
                )
            rate, stats = load(port, get(prefix), args.seconds, args.connections, proc.pid)
            out[f"{tag}get_rate"] = rate
            print(f"{label}get closed loop: {rate:8.0f} req/s  {stats}")
        finally:
            proc.terminate()
            proc.wait(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--quick", action="store_true", help="2 s per figure (a laptop)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2.0
        args.tenants = min(args.tenants, 10_000)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"mno_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            limits = {"rate_limit": 10_000_000, "rate_burst": 10_000_000}
            (home / "config.yaml").write_text(
                json.dumps(
                    {
                        "profiles": {
                            "cached": {"api": {**limits, "authorize_cache": "1h"}},
                            "uncached": {"api": {**limits, "authorize_cache": "0s"}},
                        }
                    }
                )
            )
            started = time.monotonic()
            creds = setup(home, url, args.tenants)
            print(f"store: {args.tenants} tenants made in {time.monotonic() - started:.0f}s")
            reads = tenant_reads(home, url, creds["op"], args, procs)
            headers = {"Authorization": f"Basic {creds['auth']}"}
            authz = request_bytes(
                "POST",
                "/v1/idm/authorize",
                {"token": creds["token"], "tenant": "acme", "action": "read"},
                headers,
            )
            health = request_bytes("GET", "/healthz", None, {})
            print(
                f"API on one core (CPU 0), PostgreSQL, {args.connections} keep-alive "
                f"connections, {args.seconds:g}s per figure; load average "
                f"{os.getloadavg()[0]:.2f}"
            )
            results: dict[str, float] = {}
            for profile in ("cached", "uncached"):
                proc, port = start_server(home, url, profile)
                procs.append(proc)
                load(port, lambda: authz, 1.0, args.connections)  # warm up
                if profile == "cached":
                    rate, stats = load(
                        port, lambda: health, args.seconds, args.connections, proc.pid
                    )
                    results["healthz"] = rate
                    print(f"baseline GET /healthz:        {rate:8.0f} req/s  {stats}")
                rate, stats = load(port, lambda: authz, args.seconds, args.connections, proc.pid)
                results[profile] = rate
                print(f"IDM authorize, {profile:8}:      {rate:8.0f} req/s  {stats}")
                if profile == "cached":
                    from mno.api.routes import billing_available

                    if billing_available():
                        usage = usage_requests(headers)
                        rate, stats = load(port, usage, args.seconds, args.connections, proc.pid)
                        results["usage"] = rate
                        print(f"dev usage posts (persisted): {rate:8.0f} req/s  {stats}")
                        print(
                            f"  usage rows in the store: {usage_rows(url)} (201 answers: ", end=""
                        )
                        print(f"{stats.get('201', 0)})")
                    else:
                        print("dev usage posts: not measured (mno.billing.usage is not installed)")
                proc.terminate()
                proc.wait(10)
            print(f"load average at the end: {os.getloadavg()[0]:.2f}")
            for name in ("get", "list"):
                mno_p99, bare_p99 = reads[f"{name}_p99"], reads[f"bare_{name}_p99"]
                print(f"ratio {name} p99 mno/bare  {mno_p99 / bare_p99:.2f}")
            print(f"ratio GET rate mno/bare {reads['get_rate'] / reads['bare_get_rate']:.2f}")
            base = results["healthz"]
            print(f"ratio cached/healthz   {results['cached'] / base:.2f}")
            print(f"ratio uncached/healthz {results['uncached'] / base:.2f}")
            print(f"ratio cached/uncached  {results['cached'] / results['uncached']:.1f}")
            if "usage" in results:
                print(f"ratio usage/healthz    {results['usage'] / base:.2f}")
            if args.json:
                figures = [
                    {
                        "name": f"api.{name}",
                        "value": round(results[name], 1),
                        "unit": "req/s",
                        "better": "higher",
                        "baseline": round(base, 1),
                        "baseline_name": "GET /healthz, same server and run",
                        "ratio": round(results[name] / base, 3),
                        "goal": goal,
                    }
                    for name, goal in (("cached", 3000), ("uncached", None), ("usage", 500))
                    if name in results
                ]
                Path(args.json).write_text(json.dumps({"figures": figures}, indent=1))
            rate = f"{args.rate:g}"
            for name in ("get", "list"):
                p99 = reads[f"{name}_p99"]
                print(f"goal p99 <= 25 ms at {rate}/s, {name:4}: {verdict(p99 <= 25)}")
            share = reads["get_rate"] / reads["bare_get_rate"]
            print(f"goal GET rate >= 60% of bare:    {verdict(share >= 0.6)}")
            print(f"goal 3000/s cached authorize:    {verdict(results['cached'] >= 3000)}")
            if "usage" in results:
                print(f"goal 500/s usage posts:          {verdict(results['usage'] >= 500)}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
