"""Nex on Docker Swarm, each figure against a floor measured in the same run.

1. N single-replica services (50) to running and healthy through mno: instances on a
   ``runtime: swarm`` host, the provisioner with the shipped options
   (``configs/agents.yaml``), concurrency 8, until every instance is ``running`` (Swarm
   calls a task running once its health check passed). Floor: a plain docker SDK loop on
   8 threads creating the same services (same image, labels, limits, health check,
   restart and update policy, overlay network) and polling each service's tasks every
   50 ms until its task runs. Goal: ratio <= 1.2.
2. A rolling update of a 3-replica service (image 1 -> 2) through ``mno instance update``
   while a client loop sends requests to the service's running tasks (re-read from the
   engine between requests, as a service-discovery client does), counting the failed
   requests. Goal: 0.

The local engine must be a swarm manager (``docker swarm init --advertise-addr
127.0.0.1``; the bench makes one and leaves it again when it is not). Services publish in
``host`` mode unless ``--ingress`` is given (the routing mesh needs IPVS in the kernel).

Usage: python -m bench.swarm [--services 50] [--concurrency 8] [--pg URL] [--ingress]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

IMAGE = "mno-test/web:1"
ROOT = Path(__file__).resolve().parent.parent
PORT = 8080


def shipped_options() -> dict[str, Any]:
    from mno.agents import config

    cfg = config.load(ROOT / "configs/agents.yaml")
    return dict(cfg.agents["provisioner"].options)


def plain_one(client: Any, name: str, network: str, publish_mode: str, opts: Any) -> None:
    """What a hand-written script does: create the service, poll its task until running."""
    from docker import types

    from mno.nex import runtime_docker

    interval = min(opts.health_start_interval_s, opts.health_interval_s)
    service = client.api.create_service(
        types.TaskTemplate(
            types.ContainerSpec(
                IMAGE,
                labels={"bench": "swarm"},
                healthcheck=types.Healthcheck(
                    test=runtime_docker.health_command(PORT, "/health"),
                    interval=int(interval * 1e9),
                    timeout=int(5e9),
                    retries=opts.health_retries,
                    start_period=int(opts.health_start_period_s * 1e9),
                ),
                init=True,
            ),
            resources=types.Resources(mem_limit=64 * 2**20, mem_reservation=64 * 2**20),
            restart_policy=types.RestartPolicy("on-failure", max_attempts=opts.restart_retries),
            networks=[network],
        ),
        name=name,
        labels={"bench": "swarm"},
        mode=types.ServiceMode("replicated", replicas=1),
        update_config=types.UpdateConfig(
            parallelism=1, failure_action="rollback", monitor=int(2e9), order="start-first"
        ),
        endpoint_spec=types.EndpointSpec(
            ports=[{"TargetPort": PORT, "Protocol": "tcp", "PublishMode": publish_mode}]  # type: ignore[list-item]
        ),
    )
    deadline = time.monotonic() + 120
    while True:
        tasks = client.api.tasks(filters={"service": service["ID"], "desired-state": "running"})
        if any(t["Status"]["State"] == "running" for t in tasks):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not running")
        time.sleep(0.05)


def plain(client: Any, n: int, threads: int, network: str, publish_mode: str) -> float:
    from mno.nex.containers import Options

    opts = Options.from_dict(shipped_options())
    names = [f"bench-swarm-{uuid.uuid4().hex[:8]}" for _ in range(n)]
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda nm: plain_one(client, nm, network, publish_mode, opts), names))
    elapsed = time.perf_counter() - started
    remove_services(client, "bench=swarm")
    return elapsed


def remove_services(client: Any, label: str) -> None:
    for s in client.api.services(filters={"label": label}):
        client.api.remove_service(s["ID"])
    deadline = time.monotonic() + 60
    # task containers carry bench=swarm (plain) or mno.tenant=<key> (mno)
    while client.api.containers(all=True, filters={"label": label}):
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)


def tick_until_settled(url: str, options: dict[str, Any], concurrency: int) -> None:
    from mno.agents import provisioner
    from mno.agents.base import TickContext

    while True:
        ctx = TickContext(
            agent="provisioner",
            db_url=url,
            batch_size=32,
            concurrency=concurrency,
            lease_for=timedelta(minutes=5),
            options=options,
        )
        result = provisioner.tick(ctx)
        if result.failed or result.retried:
            raise RuntimeError(f"provisioning failed: {result}")
        if not result.claimed:
            return


def mno_run(url: str, n: int, concurrency: int) -> tuple[float, str]:
    from mno.nex import instances
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    key = f"b{uuid.uuid4().hex[:8]}"
    with session_scope(url) as s:
        tenants.create(s, key, status="active")
        for i in range(n):
            instances.create(s, key, "web", name=f"{key}-{i}")
    started = time.perf_counter()
    tick_until_settled(url, shipped_options(), concurrency)
    wall = time.perf_counter() - started
    with session_scope(url, write=False) as s:
        views = instances.list_instances(s, tenant=key)
        running = sum(1 for v in views if v.instance.status == "running")
    if running != n:
        errors = {v.instance.last_error for v in views if v.instance.status != "running"}
        raise RuntimeError(f"only {running}/{n} instances running: {errors}")
    return wall, key


def rolling_update(url: str, client: Any) -> tuple[int, int, str, float]:
    """A 3-replica instance updated from image 1 to 2 under a client loop: (requests,
    failed, outcome, seconds)."""
    from typer.testing import CliRunner

    from mno.cli import app as cli_app
    from mno.nex import instances
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    key = f"r{uuid.uuid4().hex[:8]}"
    with session_scope(url) as s:
        tenants.create(s, key, status="active")
        inst = instances.create(s, key, "web", name=f"{key}-roll")
        instances.scale(s, inst.name, 3)
        iid = str(inst.id)
    tick_until_settled(url, shipped_options(), 8)

    def ports() -> list[int]:
        found = []
        for svc in client.api.services(filters={"label": f"mno.instance={iid}"}):
            for t in client.api.tasks(filters={"service": svc["ID"], "desired-state": "running"}):
                if t["Status"]["State"] != "running":
                    continue
                cid = t["Status"]["ContainerStatus"]["ContainerID"]
                try:
                    bound = client.api.inspect_container(cid)["NetworkSettings"]["Ports"]
                except Exception:
                    continue
                found += [
                    int(b["HostPort"])
                    for b in bound.get(f"{PORT}/tcp") or []
                    if ":" not in b["HostIp"]
                ]
        return found

    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}

    def loop() -> None:
        i = 0
        while not stop.is_set():
            live = ports()
            if not live:
                counts["failed"] += 1
                continue
            port = live[i % len(live)]
            i += 1
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    counts["ok" if resp.status == 200 else "failed"] += 1
            except OSError:
                counts["failed"] += 1

    thread = threading.Thread(target=loop)
    thread.start()
    time.sleep(1.0)
    began = time.perf_counter()
    result = CliRunner().invoke(
        cli_app,
        ["instance", "update", f"{key}-roll", "--image", "mno-test/web:2", "--wait", "--inline"],
    )
    took = time.perf_counter() - began
    time.sleep(1.0)
    stop.set()
    thread.join()
    outcome = "completed" if result.exit_code == 0 else f"exit {result.exit_code}: {result.output}"
    with session_scope(url) as s:
        instances.terminate(s, f"{key}-roll")
    tick_until_settled(url, shipped_options(), 8)
    return counts["ok"] + counts["failed"], counts["failed"], outcome.strip(), took


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--pg", help="a PostgreSQL URL (default: a temporary SQLite store)")
    parser.add_argument("--ingress", action="store_true", help="publish through the mesh")
    args = parser.parse_args()

    import docker

    client = docker.from_env()
    made = client.info()["Swarm"]["LocalNodeState"] != "active"
    if made:
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            check=True,
            capture_output=True,
        )
    from tests.nex import images

    images.ensure(client, ("1", "2"))
    mode = "ingress" if args.ingress else "host"
    home = Path(tempfile.mkdtemp(prefix="mno-bench-swarm-"))
    os.environ["MNO_HOME"] = str(home)
    config = home / "platform.yaml"
    config.write_text(
        "apps_domain: apps.test\nhosts:\n  - name: cluster\n"
        f"    base_url: unix:///var/run/docker.sock\n    runtime: swarm\n    publish_mode: {mode}\n"
    )
    os.environ["MNO_CONFIG"] = str(config)
    from mno.store import db
    from mno.store.db import session_scope
    from mno.tenancy import apps

    url = args.pg or f"sqlite:///{home / 'store.db'}"
    os.environ["MNO_DB_URL"] = url
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
    network = f"bench-swarm-{uuid.uuid4().hex[:6]}"
    client.api.create_network(network, driver="overlay", attachable=True, labels={"bench": "swarm"})
    store = "PostgreSQL" if args.pg else "SQLite"
    n, c = args.services, args.concurrency
    load = os.getloadavg()
    print(
        f"{n} single-replica services of {IMAGE}, concurrency {c}, store {store}, "
        f"publish {mode}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    keys: list[str] = []
    try:
        floor = plain(client, n, c, network, mode)
        wall, key = mno_run(url, n, c)
        keys.append(key)
        print(f"  plain docker SDK services loop: {floor:7.2f} s")
        print(f"  mno provisioner (shipped opts): {wall:7.2f} s")
        print(f"  ratio mno / plain:              {wall / floor:7.2f}x  (goal <= 1.2)")
        remove_services(client, f"mno.tenant={key}")
        total, failed, outcome, took = rolling_update(url, client)
        print(
            f"rolling update of a 3-replica service 1 -> 2: {outcome} in {took:.2f} s; "
            f"client loop {total} requests, {failed} failed (goal 0)"
        )
    finally:
        for key in keys:
            remove_services(client, f"mno.tenant={key}")
        remove_services(client, "bench=swarm")
        with session_scope(url, write=False) as s:
            from mno.nex import namespace

            ns = namespace.get(s)
        for net in client.api.networks(filters={"label": "bench=swarm"}) + client.api.networks(
            filters={"label": [f"mno.namespace={ns}", "mno.pool=true"]}
        ):
            for _ in range(50):  # until the last task has left it
                try:
                    client.api.remove_network(net["Id"])
                    break
                except Exception:
                    time.sleep(0.2)
        if made:
            subprocess.run(["docker", "swarm", "leave", "--force"], check=False)


if __name__ == "__main__":
    main()
