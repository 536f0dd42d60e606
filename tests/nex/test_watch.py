"""``mno instance show NAME --watch``: each render shows the instance as it is then."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.nex.conftest import Nex


def test_show_watch_renders_the_instance_each_time(
    nex: Nex, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    monkeypatch.setenv("MNO_WATCH_COUNT", "2")
    staged = cli("instance", "show", name, "--watch", "--interval", "10ms", "-o", "json")
    assert staged.exit_code == 0, staged.stderr
    assert [json.loads(line)["status"] for line in staged.stdout.splitlines()] == [
        "staged",
        "staged",
    ]
    nex.tick()
    running = cli("instance", "show", name, "-w", "--interval", "10ms", "-o", "json")
    views = [json.loads(line) for line in running.stdout.splitlines()]
    assert [v["status"] for v in views] == ["running", "running"]
    assert all(v["name"] == name for v in views)
