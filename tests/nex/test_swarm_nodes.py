"""Nodes of a swarm host on the real engine: `mno host list` shows them, `drain` and
`activate` set the only node's availability, `label` sets and removes node labels, and
`mno host capacity` reports the node's resources. The engine joins a swarm of its own
(`docker swarm init`) when it is in none, and leaves it afterwards only then."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.nex.conftest import Nex


@pytest.fixture
def swarm(docker_client: Any) -> Iterator[str]:
    """The engine as a swarm manager; yields this node's id."""
    import docker

    swarm_info = docker_client.info()["Swarm"]
    initialised = False
    if swarm_info.get("LocalNodeState") != "active":
        docker_client.swarm.init(advertise_addr="127.0.0.1")
        initialised = True
        swarm_info = docker_client.info()["Swarm"]
    if not swarm_info.get("ControlAvailable"):
        pytest.fail("the test engine is a swarm worker; these tests need a manager")
    node_id = swarm_info["NodeID"]
    try:
        yield node_id
    finally:
        try:  # whatever happened, the node takes tasks again
            node = docker_client.nodes.get(node_id)
            if node.attrs["Spec"].get("Availability") != "active":
                node.update(node.attrs["Spec"] | {"Availability": "active"})
        except docker.errors.APIError:
            pass
        if initialised:
            docker_client.swarm.leave(force=True)


SWARM_YAML = "apps_domain: apps.test\nhosts:\n  - name: sw\n    runtime: swarm\n"


def _node(cli: Any, node_id: str) -> dict[str, Any]:
    rows = cli.json("host", "list")
    (host,) = [r for r in rows if r["name"] == "sw"]
    assert host["runtime"] == "swarm"
    (node,) = [n for n in host["nodes"] if n["id"] == node_id]
    return node


def test_drain_and_activate_the_only_node(nex: Nex, swarm: str, cli: Any) -> None:
    nex.configure(SWARM_YAML)
    node = _node(cli, swarm)
    assert node["role"] == "manager" and node["state"] == "ready"
    assert node["availability"] == "active"

    refused = cli("host", "drain", swarm)  # off a terminal: --yes is required
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert _node(cli, swarm)["availability"] == "active"

    drained = cli("host", "drain", swarm, "--yes", "-o", "json")
    assert drained.exit_code == 0, drained.stderr
    try:
        assert _node(cli, swarm)["availability"] == "drain"
        assert nex.client.nodes.get(swarm).attrs["Spec"]["Availability"] == "drain"
    finally:
        active = cli("host", "activate", node["hostname"])  # by hostname this time
    assert active.exit_code == 0, active.stderr
    assert _node(cli, swarm)["availability"] == "active"
    changes = [e[1]["availability"] for e in nex.events("host.node_updated")]
    assert changes == ["drain", "active"]

    table = cli("host", "list")
    assert table.exit_code == 0 and node["hostname"] in table.stdout


def test_label_a_node(nex: Nex, swarm: str, cli: Any) -> None:
    nex.configure(SWARM_YAML)
    key = f"mno-test-{uuid.uuid4().hex[:8]}"
    try:
        out = cli("host", "label", swarm, f"{key}=silo", "-o", "json")
        assert out.exit_code == 0, out.stderr
        assert _node(cli, swarm)["labels"][key] == "silo"
        assert nex.client.nodes.get(swarm).attrs["Spec"]["Labels"][key] == "silo"
        out = cli("host", "label", swarm, f"{key}-")
        assert out.exit_code == 0, out.stderr
        assert key not in _node(cli, swarm)["labels"]
    finally:
        node = nex.client.nodes.get(swarm)
        spec = node.attrs["Spec"]
        if key in (spec.get("Labels") or {}):
            labels = {k: v for k, v in spec["Labels"].items() if k != key}
            node.update(spec | {"Labels": labels})
    bad = cli("host", "label", swarm, "no_equals_sign")
    assert bad.exit_code == 2
    missing = cli("host", "drain", "no-such-node", "--yes")
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_swarm_capacity_reports_the_node(nex: Nex, swarm: str, cli: Any) -> None:
    nex.configure(SWARM_YAML)
    data = cli.json("host", "capacity")
    info = nex.client.info()
    (host,) = [h for h in data["hosts"] if h["host"] == "sw" and h["node"] is None]
    (node,) = [h for h in data["hosts"] if h["host"] == "sw" and h["node"] is not None]
    assert node["memory_capacity"] == info["MemTotal"]
    assert float(node["cpus"]) == info["NCPU"]
    assert host["memory_capacity"] == info["MemTotal"]  # the one active node
    assert node["availability"] == "active" and node["role"] == "manager"


def test_node_commands_need_a_swarm_host(nex: Nex, cli: Any) -> None:
    nex.configure("apps_domain: apps.test\nhosts:\n  - name: local\n")
    out = cli("host", "activate", "anything")
    assert out.exit_code == 1 and "no swarm host" in out.stderr
