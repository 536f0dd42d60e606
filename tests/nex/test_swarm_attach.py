"""`mno instance logs` (the service's logs) and `mno instance exec` (in one running
task's container) for an instance on a real (one-node) Docker Swarm."""

from __future__ import annotations

import uuid
from typing import Any

from tests.nex.conftest import Nex, wait_for
from tests.nex.test_swarm import _converge, sw, swarm  # noqa: F401
from tests.nex.test_swarm_backup import _task_container


def test_logs_and_exec_of_a_swarm_instance(sw: Nex, cli: Any) -> None:  # noqa: F811
    tenant = sw.tenant()
    sw.app(volume=False)
    name = sw.create(tenant, "web")
    assert _converge(sw, name)["status"] == "running"

    result = cli("instance", "exec", name, "--", "sh", "-c", "echo hi; echo oops >&2; exit 7")
    assert result.exit_code == 7, result.stderr
    assert (result.stdout, result.stderr) == ("hi\n", "oops\n")
    host = cli("instance", "exec", name, "--", "hostname")
    assert host.exit_code == 0
    assert host.stdout.strip() == _task_container(sw, name).attrs["Config"]["Hostname"]

    marks = [f"mark-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for mark in marks:
        said = cli("instance", "exec", name, "--", "sh", "-c", f"echo {mark} > /proc/1/fd/1")
        assert said.exit_code == 0, said.stderr

    def logged() -> Any:
        out = cli("instance", "logs", name)
        return out if out.exit_code == 0 and all(m in out.stdout for m in marks) else None

    wait_for(logged, timeout=30)
    last = cli("instance", "logs", name, "--tail", "1")
    assert last.exit_code == 0 and len(last.stdout.splitlines()) == 1
    future = cli("instance", "logs", name, "--since", "2999-01-01T00:00:00Z")
    assert future.exit_code == 0 and future.stdout == ""

    sw.change("stop", name)
    assert _converge(sw, name)["status"] == "stopped"
    refused = cli("instance", "exec", name, "--", "true")
    assert refused.exit_code == 1 and "no running task" in refused.stderr
