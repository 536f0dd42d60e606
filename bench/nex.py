"""Nex provisioning, each figure against a floor measured in the same run.

1. N instances (50) until all are healthy, concurrency 8: the provisioner's pass against a
   plain loop through the docker SDK that does the same Docker work (``containers.run``
   with the same labels, limits, health check and port publishing, then running the
   health command itself at once and every 100 ms until it passes, which is how soon a
   script can know the app is ready) on 8 threads. The provisioner run includes
   everything mno adds: the instance rows, leases, status changes with audit rows and
   events, placement and the drift scan. Goal: ratio <= 1.1.
2. Sequential ``mno instance create --wait`` of 10 instances, through the real command
   (in-process, so the interpreter's start-up is not counted), with the provisioner
   running as ``mno agents run -f configs/agents.yaml --only provisioner`` (the shipped
   configuration, in its own process), against the plain loop doing the same 10 one after
   another. Goal: ratio <= 1.3.
3. Drift repair: with 50 instances running and every provisioner slot busy (8 instances
   of a slow-starting image booting for 20 s), one container removed by hand until the
   instance is healthy again on a new container. Goal: <= 6 s (worst of the repeats).

Needs a Docker engine and busybox (the test images are built locally).

Usage: python -m bench.nex [--instances 50] [--concurrency 8] [--rounds 2] [--pg URL]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

IMAGE = "mno-test/web:1"
SLOW_IMAGE = "mno-test/web:slow"
ROOT = Path(__file__).resolve().parent.parent
PORT = 8080
TENANTS: list[str] = []  # the bench's tenants, whose containers are removed at exit


def plain_one(client: Any, name: str) -> None:
    """What a hand-written script does: run the container, poll until healthy."""
    from mno.nex import runtime_docker

    container = client.containers.run(
        IMAGE,
        name=name,
        detach=True,
        labels={"bench": "nex", "mno.managed": "false"},
        ports={f"{PORT}/tcp": ("127.0.0.1", None)},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 5},
        init=True,
        mem_limit=64 * 1024 * 1024,
        pids_limit=512,
        healthcheck={
            "test": runtime_docker.health_command(PORT, "/health"),
            "interval": int(10e9),  # the provisioner's shipped health_interval
            "timeout": int(5e9),
            "retries": 3,
            "start_period": int(30e9),
        },
    )
    # readiness as fast as a script can know it: run the health command itself at once and
    # every 100 ms (mno probes the same way while a container starts, every second), not
    # waiting for the engine's first scheduled check
    probe = ["/bin/sh", "-c", runtime_docker.health_command(PORT, "/health")[1]]
    deadline = time.monotonic() + 60
    while True:
        if client.api.inspect_container(container.id)["State"].get("Running"):
            exec_id = client.api.exec_create(container.id, probe)["Id"]
            client.api.exec_start(exec_id)
            if client.api.exec_inspect(exec_id).get("ExitCode") == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not healthy")
        time.sleep(0.1)


def plain(client: Any, n: int, threads: int) -> float:
    names = [f"bench-plain-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    started = time.perf_counter()
    if threads == 1:
        for name in names:
            plain_one(client, name)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda nm: plain_one(client, nm), names))
    elapsed = time.perf_counter() - started
    cleanup(client, "bench=nex")
    return elapsed


def cleanup(client: Any, label: str) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda c: c.remove(force=True),
                client.containers.list(all=True, filters={"label": label}),
            )
        )


def provisioner_run(
    url: str, client: Any, n: int, concurrency: int, batch: int
) -> dict[str, float]:
    from mno.agents import provisioner
    from mno.agents.base import TickContext
    from mno.nex import instances
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    key = f"b{uuid.uuid4().hex[:8]}"
    TENANTS.append(key)
    with session_scope(url) as s:
        tenants.create(s, key, status="active")
    t0 = time.perf_counter()
    with session_scope(url) as s:
        for i in range(n):
            instances.create(s, key, "web", name=f"{key}-{i}")
    create_s = time.perf_counter() - t0

    queue_s = [0.0]
    queue_cpu = [0.0]

    class TimedContext(TickContext):
        def session(self, write: bool = True) -> AbstractContextManager[Any]:
            @contextmanager
            def timed() -> Any:
                began, cpu = time.perf_counter(), time.thread_time()
                with TickContext.session(self, write) as s:
                    yield s
                queue_s[0] += time.perf_counter() - began
                queue_cpu[0] += time.thread_time() - cpu

            return timed()

    for k in provisioner.stats:
        provisioner.stats[k] = 0
    started = time.perf_counter()
    while True:
        ctx = TimedContext(
            agent="provisioner",
            db_url=url,
            batch_size=batch,
            concurrency=concurrency,
            lease_for=timedelta(minutes=5),
            options={"drift": True},
        )
        result = provisioner.tick(ctx)
        if result.failed or result.retried:
            raise RuntimeError(f"provisioning failed: {result}")
        if not result.claimed:
            break
    wall = time.perf_counter() - started
    with session_scope(url, write=False) as s:
        views = instances.list_instances(s, tenant=key)
        running = sum(1 for v in views if v.instance.status == "running")
    if running != n:
        errors = {v.instance.last_error for v in views if v.instance.status != "running"}
        raise RuntimeError(f"only {running}/{n} instances running: {errors}")
    stats = dict(provisioner.stats)
    overhead = stats["handle_s"] - stats["docker_s"] + queue_s[0]
    cpu = stats["handle_cpu_s"] - stats["docker_cpu_s"] + queue_cpu[0]
    cleanup(client, f"mno.tenant={key}")
    forget(url, key)
    return {
        "wall": wall,
        "create": create_s,
        "overhead_ms": overhead / n * 1000,
        "overhead_cpu_ms": cpu / n * 1000,
        "handler_store_ms": (stats["handle_s"] - stats["docker_s"]) / n * 1000,
        "queue_ms": queue_s[0] / n * 1000,
    }


def forget(url: str, key: str) -> None:
    """Drop a round's instance rows, so the next round's drift scan does not repair them."""
    import sqlalchemy as sa

    from mno.store.db import session_scope
    from mno.store.models.nex import Instance
    from mno.tenancy import tenants

    with session_scope(url) as s:
        tenant = tenants.get(s, key)
        s.execute(sa.delete(Instance).where(Instance.tenant_id == tenant.id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="claimed per pass (agents.yaml)")
    parser.add_argument("--pg", default=None, help="a PostgreSQL server URL (default SQLite)")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--waits", type=int, default=10, help="sequential create --wait")
    parser.add_argument("--repairs", type=int, default=3, help="drift repairs timed")
    args = parser.parse_args()

    import docker

    from tests.nex import images

    home = Path(tempfile.mkdtemp(prefix="mno-bench-nex-"))
    os.environ["MNO_HOME"] = str(home)
    os.environ.pop("MNO_CONFIG", None)
    client = docker.from_env()
    images.ensure(client, ("1", "slow"))

    from mno.store import db
    from mno.store.db import session_scope
    from mno.tenancy import apps

    url = f"sqlite:///{home / 'store.db'}"
    if args.pg:
        from bench.agents_claim import _fresh_pg

        url = _fresh_pg(args.pg)
        db.upgrade(db.get_engine(url))
    with session_scope(url) as s:
        apps.create(
            s,
            "Web",
            code="web",
            stack="nex",
            access="any",
            image=IMAGE,
            port=PORT,
            health_path="/health",
            memory="64m",
        )
        apps.create(
            s,
            "Slow",
            code="slow",
            stack="nex",
            access="any",
            image=SLOW_IMAGE,
            port=PORT,
            health_path="/health",
            memory="64m",
            multi_instantiable=True,
        )
    os.environ["MNO_DB_URL"] = url
    # an interrupted bench removes its containers too (their health checks load the engine)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    agents: list[subprocess.Popen[bytes]] = []
    try:
        run(args, client, url)
        agents.append(start_agents(url, home))
        run_waits(args, client, url)
        run_drift(args, client, url)
    finally:
        for proc in agents:
            stop_agents(proc)
        cleanup(client, "bench=nex")
        for key in TENANTS:
            cleanup(client, f"mno.tenant={key}")
    if args.pg:
        from bench.agents_claim import _drop_pg

        db.get_engine(url).dispose()
        _drop_pg(args.pg, url)


def run(args: argparse.Namespace, client: Any, url: str) -> None:
    n, c = args.instances, args.concurrency
    store = "PostgreSQL" if args.pg else "SQLite"
    print(f"{n} instances of {IMAGE}, concurrency {c}, batch {args.batch}, store {store}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not args.skip_sequential:
        seq = plain(client, n, 1)
        print(f"plain loop, sequential      {seq:7.2f} s  ({seq / n * 1000:.0f} ms/instance)")
    best_plain = best_prov = float("inf")
    best: dict[str, float] = {}
    ratios: list[float] = []
    for r in range(args.rounds):
        threaded = plain(client, n, c)
        prov = provisioner_run(url, client, n, c, args.batch)
        print(
            f"round {r + 1}: plain loop, {c} threads {threaded:6.2f} s | provisioner "
            f"{prov['wall']:6.2f} s | ratio {prov['wall'] / threaded:.2f} | overhead per "
            f"instance: {prov['overhead_cpu_ms']:.1f} ms CPU, {prov['overhead_ms']:.1f} ms "
            f"wall on {c} threads (handler {prov['handler_store_ms']:.1f}, claim/settle "
            f"{prov['queue_ms']:.1f}); recording {n} instances took "
            f"{prov['create'] * 1000:.0f} ms"
        )
        ratios.append(prov["wall"] / threaded)
        best_plain = min(best_plain, threaded)
        if prov["wall"] < best_prov:
            best_prov, best = prov["wall"], prov
    print(
        f"best: provisioner {best_prov:.2f} s vs threaded plain loop {best_plain:.2f} s: "
        f"ratio {best_prov / best_plain:.2f} (goal <= 1.1); overhead "
        f"{best['overhead_cpu_ms']:.1f} ms CPU per instance (goal < 20 ms); "
        f"median of the rounds' ratios {statistics.median(ratios):.2f}"
    )


def start_agents(url: str, home: Path) -> subprocess.Popen[bytes]:
    """``mno agents run`` with the shipped configuration, as an operator starts it."""
    from mno.store.db import session_scope

    log = (home / "agents.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(ROOT / "configs/agents.yaml")]
        + ["--only", "provisioner"],
        env=dict(os.environ, MNO_DB_URL=url, MNO_HOME=str(home), NO_COLOR="1"),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    import sqlalchemy as sa

    while time.monotonic() < deadline:
        with session_scope(url, write=False) as s:
            if s.execute(sa.text("SELECT count(*) FROM agent_heartbeat")).scalar_one():
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"mno agents run did not start (see {home / 'agents.log'})")


def stop_agents(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def new_tenant(url: str) -> str:
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    key = f"b{uuid.uuid4().hex[:8]}"
    TENANTS.append(key)
    with session_scope(url) as s:
        tenants.create(s, key, status="active")
    return key


def create_wait(key: str, name: str, app: str = "web") -> float:
    """``mno instance create KEY APP --name NAME --wait`` through the real command."""
    from typer.testing import CliRunner

    from mno.cli import app as cli

    started = time.perf_counter()
    result = CliRunner().invoke(cli, ["instance", "create", key, app, "--name", name, "--wait"])
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise RuntimeError(f"create --wait exited {result.exit_code}: {result.output}")
    return elapsed


def run_waits(args: argparse.Namespace, client: Any, url: str) -> None:
    n = args.waits
    key = new_tenant(url)
    create_wait(key, f"{key}-warm")  # loads the CLI's modules once, as plain_one's client
    plain_one(client, f"bench-plain-warm-{uuid.uuid4().hex[:6]}")
    raws: list[float] = []
    mnos: list[float] = []
    for _ in range(2):
        raws.append(plain(client, n, 1))
        started = time.perf_counter()
        each = [create_wait(key, f"{key}-{len(mnos)}-{i}") for i in range(n)]
        mnos.append(time.perf_counter() - started)
        print(
            f"sequential create --wait of {n}: mno {mnos[-1]:6.2f} s "
            f"({statistics.mean(each) * 1000:.0f} ms each, slowest {max(each) * 1000:.0f} ms) "
            f"| plain loop {raws[-1]:6.2f} s ({raws[-1] / n * 1000:.0f} ms each) "
            f"| ratio {mnos[-1] / raws[-1]:.2f}"
        )
    print(
        f"best: sequential create --wait {min(mnos):.2f} s vs plain loop {min(raws):.2f} s: "
        f"ratio {min(mnos) / min(raws):.2f} (goal <= 1.3)"
    )


def detected_after(url: str, name: str, since: Any) -> float:
    """Seconds from ``since`` to the drift event of instance ``name``."""
    from mno.store import outbox
    from mno.store.db import session_scope

    with session_scope(url, write=False) as s:
        events = outbox.list_events(s, event_type="instance.drift_detected", since=since)
        times = [e.created_at for e in events if e.payload.get("name") == name]
    return (min(times) - since).total_seconds() if times else float("nan")


def run_drift(args: argparse.Namespace, client: Any, url: str) -> None:
    from mno import clock
    from mno.nex import instances
    from mno.store.db import session_scope

    key = new_tenant(url)
    names = [f"{key}-{i}" for i in range(50)]
    with session_scope(url) as s:
        for name in names:
            instances.create(s, key, "web", name=name)

    def state(name: str) -> tuple[str, str | None]:
        with session_scope(url, write=False) as s:
            inst = instances.get(s, name)
            return inst.status, inst.container_id

    deadline = time.monotonic() + 300
    while not all(state(n)[0] == "running" for n in names):
        if time.monotonic() > deadline:
            raise RuntimeError("the 50 instances did not all become healthy")
        time.sleep(0.5)
    times: list[float] = []
    for r in range(args.repairs):
        with session_scope(url) as s:  # fill every provisioner slot with a slow start
            slow = [
                instances.create(s, key, "slow", name=f"{key}-slow-{r}-{i}").name for i in range(8)
            ]
        while not all(state(n)[0] in ("provisioning", "starting") for n in slow):
            time.sleep(0.1)
        victim = names[r * 7]
        _, old = state(victim)
        assert old is not None
        started = time.perf_counter()
        removed_at = clock.now()
        client.containers.get(old).remove(force=True)
        while True:
            status, cid = state(victim)
            if status == "running" and cid and cid != old:
                break
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"{victim} was not repaired")
            time.sleep(0.05)
        times.append(time.perf_counter() - started)
        busy = sum(1 for n in slow if state(n)[0] != "running")
        print(
            f"drift repair {r + 1}: {times[-1]:.2f} s from removal to healthy again "
            f"(detected after {detected_after(url, victim, removed_at):.2f} s; 50 running, "
            f"{busy} of 8 slow starts still booting)"
        )
        for n in slow:  # the slow ones go again, so the next round starts from 50 running
            while state(n)[0] != "running":
                time.sleep(0.2)
            with session_scope(url) as s:
                instances.terminate(s, n)
    print(
        f"drift repair of one removed container among 50 with every slot busy: worst "
        f"{max(times):.2f} s, median {statistics.median(times):.2f} s (goal <= 6 s)"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
