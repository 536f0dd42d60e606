"""The agent runtime with real processes on a real PostgreSQL store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mno.agents import probe, status
from mno.store.db import session_scope
from mno.store.models.agents import ProbeItem

pytestmark = pytest.mark.slow

CONFIG = """
heartbeat: 1s
agents:
  probe:
    interval: 0.2s
    batch_size: {batch}
    lease: {lease}
"""


def _config(tmp_path: Path, batch: int = 25, lease: str = "3s") -> Path:
    path = tmp_path / "agents.yaml"
    path.write_text(CONFIG.format(batch=batch, lease=lease))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(url: str, cfg: Path, *extra: str, log: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, MNO_DB_URL=url, NO_COLOR="1")
    return subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(cfg), "--only", "probe", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if log is None else log.open("w"),
        text=True,
    )


def _counts(url: str) -> dict:
    with session_scope(url, write=False) as s:
        return status.probe_counts(s)


def _wait_done(url: str, total: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    counts = _counts(url)
    while time.monotonic() < deadline:
        counts = _counts(url)
        if counts["items"].get("done", 0) >= total:
            return counts
        time.sleep(0.2)
    return counts


def _stop(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def test_two_processes_share_work_exactly_once(pg_url, tmp_path):
    cfg = _config(tmp_path)
    log = tmp_path / "a.log"
    a = _start(pg_url, cfg, "--log-format", "json", "--log-level", "debug", log=log)
    b = _start(pg_url, cfg)
    try:
        deadline = time.monotonic() + 60  # both processes up (heartbeats) before work arrives
        while time.monotonic() < deadline:
            with session_scope(pg_url, write=False) as s:
                if s.execute(sa.text("SELECT count(*) FROM agent_heartbeat")).scalar_one() == 2:
                    break
            time.sleep(0.1)
        with session_scope(pg_url) as s:
            probe.enqueue(s, 1000, work_ms=1)
        counts = _wait_done(pg_url, 1000)
    finally:
        _stop(a, b)
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # one object a line
    items = [x for x in lines if x.get("item")]
    assert items and all(x["agent"] == "probe" and x["outcome"] == "done" for x in items)
    assert {"ts", "level", "duration_ms"} <= set(items[0])
    assert counts["items"] == {"done": 1000}
    assert counts["effects"] == 1000 and counts["distinct_items_done"] == 1000
    with session_scope(pg_url, write=False) as s:
        owners = s.execute(
            sa.text("SELECT count(DISTINCT owner) FROM agent_probe_effect")
        ).scalar_one()
    assert owners == 2  # both processes took part


def test_kill_9_loses_nothing(pg_url, tmp_path):
    with session_scope(pg_url) as s:
        probe.enqueue(s, 1000, work_ms=8)
    cfg = _config(tmp_path, batch=50, lease="2s")
    a, b = _start(pg_url, cfg), _start(pg_url, cfg)
    try:
        deadline = time.monotonic() + 30
        leased_by_a = 0
        while time.monotonic() < deadline:
            with session_scope(pg_url, write=False) as s:
                leased_by_a = s.execute(
                    sa.select(sa.func.count())
                    .select_from(ProbeItem)
                    .where(
                        ProbeItem.lease_owner.like(f"%:{a.pid}:%"),  # type: ignore[union-attr]
                        ProbeItem.status == "pending",
                    )
                ).scalar_one()
            if leased_by_a and _counts(pg_url)["items"].get("done", 0) >= 100:
                break
            time.sleep(0.01)
        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=10)
        counts = _wait_done(pg_url, 1000)
    finally:
        _stop(a, b)
    assert leased_by_a > 0  # it died holding leases, which were taken back
    assert counts["items"] == {"done": 1000}
    assert counts["effects"] == 1000 and counts["distinct_items_done"] == 1000


def test_warm_stop_finishes_in_flight_and_releases(pg_url, tmp_path):
    with session_scope(pg_url) as s:
        probe.enqueue(s, 40, work_ms=150)
    port = _free_port()
    proc = _start(pg_url, _config(tmp_path, batch=20, lease="60s"), "--metrics-port", str(port))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with session_scope(pg_url, write=False) as s:
                leased = s.execute(
                    sa.select(sa.func.count())
                    .select_from(ProbeItem)
                    .where(ProbeItem.lease_owner.is_not(None))  # type: ignore[union-attr]
                ).scalar_one()
            if leased:
                break
            time.sleep(0.05)
        time.sleep(0.5)  # a few items (150 ms each) into the batch
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        response = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        assert "# TYPE mno_agent_item_duration_seconds histogram" in response.text
        assert "# TYPE mno_agent_queue_depth gauge" in response.text
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    finally:
        _stop(proc)
    assert code == 0
    counts = _counts(pg_url)
    with session_scope(pg_url, write=False) as s:
        still_leased = s.execute(
            sa.select(sa.func.count())
            .select_from(ProbeItem)
            .where(ProbeItem.lease_owner.is_not(None))  # type: ignore[union-attr]
        ).scalar_one()
        beats = s.execute(sa.text("SELECT count(*) FROM agent_heartbeat")).scalar_one()
    assert still_leased == 0  # unprocessed items were given back
    assert 0 < counts["items"].get("done", 0) < 40
    assert counts["effects"] == counts["items"]["done"]
    assert counts["items"].get("done", 0) + counts["items"].get("pending", 0) == 40
    assert beats == 0


def test_second_signal_stops_cold(pg_url, tmp_path):
    with session_scope(pg_url) as s:
        probe.enqueue(s, 40, work_ms=500)
    proc = _start(pg_url, _config(tmp_path, batch=20, lease="60s"))
    try:
        deadline = time.monotonic() + 30
        while _counts(pg_url)["items"].get("done", 0) == 0 and time.monotonic() < deadline:
            with session_scope(pg_url, write=False) as s:
                if s.execute(
                    sa.text("SELECT count(*) FROM agent_probe_item WHERE lease_owner IS NOT NULL")
                ).scalar_one():
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        _stop(proc)
    assert code == 1
    assert took < 5  # well before the in-flight batch (20 × 0.5 s) could have finished


def test_bad_agents_yaml_exits_2(cli, sqlite_url, tmp_path):
    bad = tmp_path / "agents.yaml"
    bad.write_text("agents:\n  housekeeper:\n    enabled: true\n    interval: soon\n")
    result = cli("agents", "run", "-f", str(bad))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: agents.yaml:4 housekeeper.interval: expected a duration like 10s"
    )
    check = cli("agents", "config", "--check", "-f", str(bad))
    assert check.exit_code == 2
    good = tmp_path / "good.yaml"
    good.write_text("agents:\n  housekeeper: {cron: '*/5 * * * *', timezone: Europe/Paris}\n")
    assert cli("agents", "config", "--check", "-f", str(good)).exit_code == 0


def test_tick_json_and_exit_code(cli, sqlite_url):
    from mno import clock

    clock.set_now(clock.now())  # retried items stay not-due while time stands still
    with session_scope(sqlite_url) as s:
        probe.enqueue(s, 30, fail_times=1)
    first = cli.json("agents", "tick", "probe", "--max", "10")
    assert (first["claimed"], first["done"], first["retried"]) == (10, 0, 10)
    assert first["outcome"] == "ok"
    assert cli("agents", "tick", "nope").exit_code == 2
    listed = cli.json("agents", "status")
    probe_row = next(a for a in listed["agents"] if a["agent"] == "probe")
    assert probe_row["last_outcome"] == "ok" and probe_row["due"] == 20


def test_tick_of_a_singleton_refuses_a_held_lock_and_gives_its_own_back(cli, sqlite_url):
    """`mno agents tick` holds a singleton agent's lock like the runner: a lock another
    host holds is a refusal (exit 1), and a pass that ran leaves no lock behind."""
    from datetime import timedelta

    from mno.store import leases

    with session_scope(sqlite_url) as s:
        assert leases.acquire_lock(s, "agent:biller", "other-host:1:x", timedelta(minutes=5))
    held = cli("agents", "tick", "biller")
    assert held.exit_code == 1
    assert held.stderr.strip() == (
        "Error: biller runs on one host at a time and other-host:1:x holds it"
    )
    with session_scope(sqlite_url) as s:
        assert leases.release_lock(s, "agent:biller", "other-host:1:x")
    assert cli.json("agents", "tick", "biller")["outcome"] == "ok"
    with session_scope(sqlite_url) as s:
        assert leases.lock_holder(s, "agent:biller") is None


def test_systemd_unit(cli):
    unit = cli("agents", "systemd", "--name", "mno-agents").stdout
    assert "Restart=on-failure" in unit and "KillSignal=SIGTERM" in unit
    assert "TimeoutStopSec=" in unit and "agents run -f /etc/mno/agents.yaml" in unit
    user_unit = cli("agents", "systemd", "--user").stdout
    assert "User=" not in user_unit and "WantedBy=default.target" in user_unit


def test_systemd_stop_timeout_fits_the_longest_lease(cli, tmp_path):
    cfg = tmp_path / "agents.yaml"
    cfg.write_text(
        "agents:\n  a: {lease: 2m}\n  b: {lease: 5m}\n  c: {lease: 1h, enabled: false}\n"
    )
    unit = cli("agents", "systemd", "-f", str(cfg)).stdout
    assert "TimeoutStopSec=315s" in unit  # 5m + a margin; disabled agents do not count
    assert f"agents run -f {cfg} " in unit


def test_unreachable_store_is_retried_not_fatal(tmp_path):
    port = _free_port()
    log = tmp_path / "err.log"
    proc = _start(
        "postgresql+psycopg://postgres@127.0.0.1:1/none",
        _config(tmp_path),
        "--metrics-port",
        str(port),
        log=log,
    )
    try:
        # up, listening and retrying the store: however long start-up takes on a busy host
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()  # still running
            if health is None:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                except httpx.TransportError:
                    pass
            if health is not None and "retrying in" in log.read_text():
                break
            time.sleep(0.2)
        assert health is not None and health.status_code == 503
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        err = log.read_text()
    finally:
        _stop(proc)
    assert code == 0
    assert "store unreachable" in err and "retrying in" in err


def test_singleton_lock_one_holder(pg_url):
    from mno.agents.config import AgentConfig, AgentsFile
    from mno.agents.runner import Runner

    cfg = AgentsFile(agents={"housekeeper": AgentConfig(name="housekeeper", interval="1m")})
    one, two = Runner(cfg, db_url=pg_url), Runner(cfg, db_url=pg_url)
    for r in (one, two):
        r.select_agents()
    assert one._hold_singleton("housekeeper") is True
    assert two._hold_singleton("housekeeper") is False
    one.beat()  # renews the lock it holds
    assert two._hold_singleton("housekeeper") is False
    one._cleanup()  # a warm stop releases it
    assert two._hold_singleton("housekeeper") is True
    assert one._hold_singleton("housekeeper") is False
