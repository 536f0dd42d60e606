"""The provisioner under ``mno agents run``, on the real engine: a change wakes it at
once (no waiting for the interval), ``--wait`` follows this request's outcome and fails
fast with no provisioner running, and a slow instance does not hold up drift repair.

The agents run with a 60 s interval, so anything done well before that was woken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mno.store.db import session_scope
from tests.nex.conftest import FAST, wait_for

pytestmark = pytest.mark.slow

OPTIONS = {**FAST, "ready_timeout": "60s", "health_start_period": "45s", "max_attempts": 2}


def _agents_yaml(
    path: Path, interval: str = "60s", drift_interval: str = "60s", concurrency: str = "4"
) -> Path:
    options = {**OPTIONS, "drift_interval": drift_interval}
    lines = "\n".join(f"      {k}: {json.dumps(v)}" for k, v in options.items())
    path.write_text(
        "heartbeat: 1s\n"
        "agents:\n"
        "  provisioner:\n"
        f"    interval: {interval}\n"
        "    batch_size: 8\n"
        f"    concurrency: {concurrency}\n"
        "    lease: 5m\n"
        "    options:\n"
        f"{lines}\n"
    )
    return path


def _start_agents(cfg: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(cfg), "--only", "provisioner"],
        env=dict(os.environ, NO_COLOR="1"),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )


def _stop(*procs: subprocess.Popen[str]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def _mno(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mno", *args],
        env=dict(os.environ, NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _beats(url: str) -> int:
    with session_scope(url, write=False) as s:
        return int(s.execute(sa.text("SELECT count(*) FROM agent_heartbeat")).scalar_one())


def _ticks_since(url: str, since: Any) -> set[str]:
    """The processes that started a provisioner pass after ``since``."""
    with session_scope(url, write=False) as s:
        rows = s.execute(
            sa.text("SELECT owner, started_at FROM agent_tick WHERE agent = 'provisioner'")
        ).all()
    out = set()
    for owner, started in rows:
        if isinstance(started, str):
            from datetime import datetime

            started = datetime.fromisoformat(started)
        if started.tzinfo is None:
            started = started.replace(tzinfo=since.tzinfo)
        if started > since:
            out.add(owner)
    return out


@pytest.fixture
def agents(nex, tmp_path):
    procs: list[subprocess.Popen[str]] = []

    def start(count: int = 1, **kw: str) -> list[subprocess.Popen[str]]:
        cfg = _agents_yaml(tmp_path / "agents.yaml", **kw)
        for i in range(count):
            procs.append(_start_agents(cfg, tmp_path / f"agents-{len(procs)}-{i}.log"))
        wait_for(lambda: _beats(nex.url) >= len(procs), timeout=60)
        return procs

    yield start
    _stop(*procs)


def test_create_wait_is_woken_at_once_not_by_the_interval(nex, agents, store_url):
    """Sequential ``instance create --wait`` through the real CLI, each well inside the
    60 s interval: only a wake-up can have started the provisioner's pass."""
    tenant = nex.tenant()
    nex.app("web", volume=False, multi_instantiable=True)
    agents()
    for i in range(2):
        run = _mno(
            "instance", "create", tenant, "web", "--name", f"{tenant}-{i}", "--wait",
            "--timeout", "40s", "-o", "json",
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["status"] == "running"
    # a stop is a change too: it wakes the provisioner the same way
    run = _mno("instance", "stop", f"{tenant}-0", "--wait", "--timeout", "40s", "-o", "json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "stopped"


def test_wait_without_a_provisioner_fails_fast_or_works_inline(nex):
    tenant = nex.tenant()
    nex.app("web", volume=False)
    run = _mno("instance", "create", tenant, "web", "--wait", timeout=60)
    assert run.returncode == 3
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "mno agents run" in lines[0] and "--inline" in lines[0]
    run = _mno("instance", "list", "--tenant", tenant, "-o", "json")
    assert json.loads(run.stdout) == []  # refused before anything was written
    run = _mno("instance", "create", tenant, "web", "--wait", "--inline", "-o", "json")
    assert run.returncode == 0, run.stderr
    view = json.loads(run.stdout)
    assert view["status"] == "running" and nex.get(view["name"])["work"] == "idle"


def test_wait_follows_this_request_not_an_earlier_failure(nex):
    tenant = nex.tenant()
    nex.app("web", image="mno-test/web:broken", volume=False)
    name = nex.create(tenant, "web")
    while nex.get(name)["work"] == "pending":
        nex.tick(max_attempts=1, ready_timeout="4s", health_start_period="1s")
    assert nex.get(name)["status"] == "failed"
    # the earlier failure is not this request's outcome: --wait follows the update
    run = _mno(
        "instance", "update", name, "--image", "mno-test/web:1", "--wait", "--inline",
        "-o", "json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["status"] == "running"
    # and a failure of this request is reported as such (exit 1, one line)
    run = _mno("instance", "update", name, "--image", "mno-test/web:broken", "--wait", "--inline")
    assert run.returncode == 1
    assert run.stderr.strip().startswith(f"Error: instance {name} failed")


def test_a_slow_instance_does_not_hold_up_drift_repair(nex, agents):
    """While one instance takes ages to start, a container removed by hand is repaired,
    even when the slow one holds the only slot (the drift scan repairs on its own), and
    at once: the engine's event runs the scan, not its 60 s interval."""
    from tests.nex import images

    tenant = nex.tenant()
    nex.app("web", volume=False)
    nex.app("slow", image="mno-test/web:slow", volume=False)
    agents(concurrency="1")  # the drift scan runs on the engine's event, not its interval
    fast = nex.create(tenant, "web")
    wait_for(lambda: nex.get(fast)["status"] == "running", timeout=60)
    slow = nex.create(tenant, "slow")
    wait_for(lambda: nex.get(slow)["status"] in ("provisioning", "starting"), timeout=60)
    before = nex.containers(fast)
    assert len(before) == 1
    before[0].remove(force=True)
    # repaired (a new container, running) while the slow instance still boots
    wait_for(
        lambda: (
            nex.get(fast)["status"] == "running"
            and [c.id for c in nex.containers(fast)] not in ([], [before[0].id])
        ),
        timeout=images.SLOW_START_S * 3,
    )
    assert nex.get(slow)["status"] != "running"
    wait_for(lambda: nex.get(slow)["status"] == "running", timeout=120)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_two_processes_both_wake_and_each_instance_is_done_once(nex, agents, store_url):
    pg_url = store_url
    from datetime import UTC, datetime

    tenant = nex.tenant()
    nex.app("web", volume=False, multi_instantiable=True)
    agents(count=2)
    wait_for(lambda: len(_ticks_since(pg_url, datetime(2000, 1, 1, tzinfo=UTC))) == 2)
    since = datetime.now(UTC)
    names = [nex.create(tenant, "web", name=f"{tenant}-{i}") for i in range(4)]
    wait_for(lambda: all(nex.get(n)["status"] == "running" for n in names), timeout=55)
    assert _ticks_since(pg_url, since) and len(_ticks_since(pg_url, since)) == 2  # both woke
    for n in names:
        assert len(nex.containers(n)) == 1
    running = [p["name"] for t, p in nex.events() if t == "instance.running"]
    provisioning = [p["name"] for t, p in nex.events() if t == "instance.provisioning"]
    assert sorted(running) == sorted(names) and sorted(provisioning) == sorted(names)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_killed_listener_connection_delays_work_by_one_interval_at_most(nex, agents, store_url):
    pg_url = store_url
    tenant = nex.tenant()
    nex.app("web", volume=False, multi_instantiable=True)
    agents(interval="5s")

    def listeners() -> int:
        with session_scope(pg_url, write=False) as s:
            return int(
                s.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE application_name LIKE 'mno-agents %'"
                    )
                ).scalar_one()
            )

    wait_for(lambda: listeners() == 1, timeout=30)
    with session_scope(pg_url) as s:
        killed = s.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'mno-agents %'"
            )
        ).scalar_one()
    assert killed == 1
    name = nex.create(tenant, "web", name=f"{tenant}-0")  # its notification may be lost
    wait_for(lambda: nex.get(name)["status"] == "running", timeout=55)
    wait_for(lambda: listeners() == 1, timeout=30)  # the listener came back
    name = nex.create(tenant, "web", name=f"{tenant}-1")
    wait_for(lambda: nex.get(name)["status"] == "running", timeout=55)
