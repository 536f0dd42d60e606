"""Capacity on the real engine: instances wait in pending_capacity when no host has room,
the scale-out command runs once (and records its calls), the capacity events are emitted
once per transition, and room appearing (a raised limit, a changed host) places the
waiting instance. ``mno host capacity`` figures are checked against ``docker info``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mno import clock
from tests.nex.conftest import Nex, wait_for

SCRIPT = """\
import json, os, sys
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({k: v for k, v in os.environ.items() if k.startswith("MNO_")}) + "\\n")
print("scaling out: api_token=s3cr3t-value-123 done")
print("master", os.environ.get("MNO_MASTER_KEY", "absent"))
"""


def _config(max_instances: int, script: Path | None, calls: Path | None, **capacity: Any) -> str:
    text = f"""\
apps_domain: apps.test
hosts:
  - name: local
    max_instances: {max_instances}
capacity:
  low_memory_pct: {capacity.get("low_memory_pct", 0)}
  low_slots: {capacity.get("low_slots", 0)}
"""
    if script is not None:
        text += f"""\
  scale_out:
    command: [{json.dumps(sys.executable)}, {json.dumps(str(script))}, {json.dumps(str(calls))}]
    timeout: 60s
    cooldown: 1h
"""
    return text


def _calls(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _two_waiting(nex: Nex, memory: str = "64m") -> tuple[str, str]:
    app = nex.app("web", memory=memory)
    first = nex.create(nex.tenant(), app)
    second = nex.create(nex.tenant(), app)
    return first, second


def _next_attempt(nex: Nex, name: str) -> Any:
    from mno.nex import instances
    from mno.store.db import session_scope

    with session_scope(nex.url, write=False) as s:
        return instances.get(s, name).next_attempt_at


def _statuses(nex: Nex, *names: str) -> list[str]:
    return sorted(nex.get(n)["status"] for n in names)


def test_waits_for_room_scale_out_once_then_placed(
    nex: Nex, store_url: str, tmp_path: Path
) -> None:
    from mno.nex import capacity

    script, calls = tmp_path / "scale.py", tmp_path / "calls.jsonl"
    script.write_text(SCRIPT)
    nex.configure(_config(1, script, calls))
    first, second = _two_waiting(nex)

    nex.tick()
    assert _statuses(nex, first, second) == ["pending_capacity", "running"]
    waiting = first if nex.get(first)["status"] == "pending_capacity" else second
    assert "at its limit of 1 instances" in nex.get(waiting)["last_error"]
    assert nex.get(waiting)["work"] == "pending"  # still queued, not failed

    # the scale-out command ran once, on its own thread, with what waits in its env
    wait_for(lambda: nex.events("nex.scale_out_ran"))
    for _ in range(3):  # later passes: still waiting, no second run nor event
        nex.tick()
        wait_for(lambda: not capacity._running.locked())
    assert nex.get(waiting)["status"] == "pending_capacity"
    runs = _calls(calls)
    assert len(runs) == 1
    assert runs[0]["MNO_WAITING_INSTANCES"] == "1"
    assert runs[0]["MNO_WAITING_MEMORY"] == str(64 * 1024 * 1024)
    assert runs[0]["MNO_WAITING_APPS"] == "web"
    assert "MNO_MASTER_KEY" not in runs[0]  # mno's own secrets stay out of its env
    assert [e[1]["exit_code"] for e in nex.events("nex.scale_out_ran")] == [0]
    assert len(nex.events("nex.capacity_exhausted")) == 1
    assert len(nex.events("instance.pending_capacity")) == 1
    assert nex.events("nex.capacity_exhausted")[0][1]["waiting"]["instances"] == 1

    # the run is audited with its output, secrets redacted
    from mno.store import audit
    from mno.store.db import session_scope

    with session_scope(nex.url, write=False) as s:
        entries = audit.list_entries(s, action="capacity.scale_out")
        shown = json.dumps([e.diff for e in entries])
    assert len(entries) == 1
    assert "api_token=***" in shown and "s3cr3t-value-123" not in shown

    # room appears: the limit is raised, the next pass places the waiting instance
    nex.configure(_config(2, script, calls))
    nex.tick()
    assert _statuses(nex, first, second) == ["running", "running"]
    with session_scope(nex.url, write=False) as s:
        assert capacity.report(s)["exhausted"] is False
        assert capacity.waiting(s) == []
    assert len(_calls(calls)) == 1
    assert len(nex.events("nex.capacity_exhausted")) == 1


def test_a_changed_host_makes_waiting_instances_due(nex: Nex, store_url: str) -> None:
    from mno.nex import hosts
    from mno.store.db import session_scope

    nex.configure("apps_domain: apps.test\n")
    with session_scope(nex.url) as s:
        hosts.add(s, "one", base_url="unix:///var/run/docker.sock", max_instances=1)
    first, second = _two_waiting(nex)
    nex.tick(capacity_retry="1h")  # a waiting instance is not retried on its own soon
    assert _statuses(nex, first, second) == ["pending_capacity", "running"]
    with session_scope(nex.url) as s:
        hosts.update(s, "one", max_instances=2)  # room appears: due at once
    result = nex.tick(capacity_retry="1h")
    assert result.claimed >= 1
    assert _statuses(nex, first, second) == ["running", "running"]


def test_a_terminated_instance_frees_its_slot(nex: Nex, store_url: str) -> None:
    nex.configure(_config(1, None, None))
    first, second = _two_waiting(nex)
    nex.tick(capacity_retry="1h")
    running = first if nex.get(first)["status"] == "running" else second
    waiting = second if running == first else first
    running_id = nex.get(running)["id"]
    nex.change("terminate", running)
    nex.tick(capacity_retry="1h")
    assert nex.get(running_id)["status"] == "terminated"
    if nex.get(waiting)["status"] == "pending_capacity":
        # it was tried before the slot was free: the termination made it due at once
        # (and woke the provisioner), not in capacity_retry (1h)
        assert _next_attempt(nex, waiting) <= clock.now()
        nex.tick(capacity_retry="1h")
    assert nex.get(waiting)["status"] == "running"


def test_labels_that_match_no_host_still_fail(nex: Nex) -> None:
    """Only lack of room waits; a tier no host can ever take is a failure, as before."""
    nex.configure(
        "apps_domain: apps.test\nhosts:\n  - name: local\n"
        "tiers:\n  gold:\n    labels: {disk: ssd}\n"
    )
    app = nex.app("web")
    name = nex.create(nex.tenant(tier="gold"), app)
    nex.tick()
    assert nex.get(name)["status"] == "failed"
    assert not nex.events("nex.capacity_exhausted")


def test_capacity_low_once_per_transition(nex: Nex, store_url: str) -> None:
    from mno.nex import capacity

    nex.configure(_config(3, None, None, low_slots=2))
    app = nex.app("web")
    nex.create(nex.tenant(), app)
    nex.tick()
    for _ in range(3):
        capacity.follow(nex.url)
    low = nex.events("nex.capacity_low")
    assert len(low) == 1
    assert low[0][1]["host"] == "local" and low[0][1]["slots_free"] == 2
    # recovered (more slots), then low again: a second event
    nex.configure(_config(10, None, None, low_slots=2))
    capacity.follow(nex.url)
    nex.configure(_config(3, None, None, low_slots=2))
    capacity.follow(nex.url)
    assert len(nex.events("nex.capacity_low")) == 2


def test_host_capacity_json_matches_docker_info(nex: Nex, cli: Any) -> None:
    nex.configure(_config(4, None, None))
    app = nex.app("web", memory="96m")
    name = nex.create(nex.tenant(), app, cpus="0.5")
    nex.tick()
    assert nex.get(name)["status"] == "running"
    waiting = nex.create(nex.tenant(), app)
    with pytest.MonkeyPatch.context():
        data = cli.json("host", "capacity")
    info = nex.client.info()
    (local,) = [h for h in data["hosts"] if h["host"] == "local"]
    assert local["reachable"] is True
    assert local["memory_capacity"] == info["MemTotal"]
    assert local["memory_source"] == "engine"
    assert local["memory_reserved"] == 96 * 1024 * 1024
    assert local["memory_free"] == info["MemTotal"] - 96 * 1024 * 1024
    assert local["cpus"] == str(info["NCPU"])
    assert local["cpus_reserved"] == "0.5"
    assert local["instances"] == 1 and local["slots_free"] == 3
    assert data["waiting"]["instances"] == 0  # staged, not waiting for room
    assert nex.get(waiting)["status"] == "staged"
    table = cli("host", "capacity")
    assert table.exit_code == 0 and "No instance is waiting for room." in table.stdout


def test_scale_out_timeout_is_recorded(nex: Nex, tmp_path: Path) -> None:
    from mno import platform
    from mno.agents.base import TickContext  # noqa: F401  (the agent's owner format)
    from mno.nex import capacity

    nex.configure(
        _config(1, None, None) + f"  scale_out:\n    command: [{json.dumps(sys.executable)}, -c, "
        '"import time; time.sleep(30)"]\n    timeout: 1s\n'
    )
    first, second = _two_waiting(nex)
    nex.tick(capacity_retry="1h")
    wait_for(lambda: nex.events("nex.scale_out_ran"), timeout=30)
    (event,) = nex.events("nex.scale_out_ran")
    assert event[1]["timed_out"] is True and event[1]["exit_code"] is None
    # within the cooldown nothing runs again
    assert capacity.scale_out(nex.url, "other-owner", platform.load()) is None


def test_wait_reports_an_instance_waiting_for_room(nex: Nex, cli: Any) -> None:
    nex.configure(_config(1, None, None))
    app = nex.app("web")
    nex.create(nex.tenant(), app)
    nex.tick()
    out = cli("instance", "create", nex.tenant(), app, "--wait", "--inline")
    assert out.exit_code == 1, out.stderr
    assert "waits for room" in out.stderr and "mno host capacity" in out.stderr
    listed = cli.json("instance", "list", "--status", "pending_capacity")
    assert len(listed) == 1


def test_scale_out_skipped_while_another_agent_host_runs_it(
    nex: Nex, store_url: str, tmp_path: Path
) -> None:
    from datetime import timedelta

    from mno import platform
    from mno.nex import capacity
    from mno.store import leases
    from mno.store.db import session_scope

    script, calls = tmp_path / "scale.py", tmp_path / "calls.jsonl"
    script.write_text(SCRIPT)
    nex.configure(_config(1, script, calls))
    with session_scope(nex.url) as s:  # another agent host runs the command
        assert leases.take_lock(s, capacity.SCALE_OUT_LOCK, "host-b:1:x", timedelta(minutes=5))
    first, second = _two_waiting(nex)
    nex.tick(capacity_interval="1h")
    wait_for(lambda: not capacity._running.locked())
    assert capacity.scale_out(nex.url, "host-a:1:y", platform.load()) is None
    assert _calls(calls) == [] and not nex.events("nex.scale_out_ran")
    with session_scope(nex.url) as s:  # it finished: the next try here runs it
        leases.release_lock(s, capacity.SCALE_OUT_LOCK, "host-b:1:x")
    outcome = capacity.scale_out(nex.url, "host-a:1:y", platform.load())
    assert outcome is not None and outcome["exit_code"] == 0
    assert len(_calls(calls)) == 1
