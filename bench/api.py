"""Hub API throughput: IDM authorize (cached and uncached) and Developer API usage posts.

The API runs under uvicorn in a child process pinned to one core (CPU 0) on a fresh
PostgreSQL database; the load generator (asyncio, keep-alive connections) runs on the
other core. The baseline is ``GET /healthz`` on the same server in the same run, so the
ratios say how much of a no-op route's rate each call keeps.

    python3 bench/api.py [--seconds 5] [--connections 32] [--pg URL]

Goals: 3,000 authorize/s cached, 500 usage posts/s persisted on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
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


def setup(home: Path, url: str) -> dict[str, str]:
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
        try:
            from mno.store.models.billing import BillingMetric

            s.add(BillingMetric(code="api_calls", name="API calls"))
        except ImportError:
            pass
    db.dispose_all()
    auth = base64.b64encode(f"{key.key.key_id}:{key.secret}".encode()).decode()
    return {"auth": auth, "token": token.secret}


def start_server(home: Path, url: str, profile: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    code = (
        "import os; os.sched_setaffinity(0, {0});"
        f"from mno.api import server; server.serve('127.0.0.1', {port})"
    )
    env = {**os.environ, "MNO_HOME": str(home), "MNO_DB_URL": url, "MNO_PROFILE": profile}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the API server did not start")


def request_bytes(method: str, path: str, body: dict | None, headers: dict[str, str]) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _worker(port: int, make: object, until: float, stats: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            writer.write(make())  # type: ignore[operator]
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            stats[str(status)] = stats.get(str(status), 0) + 1
    finally:
        writer.close()


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pg", default=PG)
    parser.add_argument("--quick", action="store_true", help="2 s per figure (a laptop)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 2.0
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
            creds = setup(home, url)
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
            print(f"goal 3000/s cached: {'met' if results['cached'] >= 3000 else 'NOT met'}")
            if "usage" in results:
                print(f"goal 500/s usage:   {'met' if results['usage'] >= 500 else 'NOT met'}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
