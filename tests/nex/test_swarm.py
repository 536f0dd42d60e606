"""Instances on a real Docker Swarm (a one-node swarm on the local engine): services with
replicas, scaling, health-gated rolling updates and Swarm's rollback, secrets mounted as
files and rotated, a silo tenant's overlay network, and drift repair.

The ``swarm`` fixture runs ``docker swarm init --advertise-addr 127.0.0.1`` when the
engine is not in a swarm, and leaves the swarm at the end of the session only when it
made it. Services publish in ``host`` mode (each task its own port): the routing mesh
needs IPVS, which not every test machine's kernel has.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.nex.conftest import Nex, get_page, wait_for


@pytest.fixture(scope="session")
def swarm(docker_client: Any) -> Iterator[Any]:
    """The local engine as a one-node swarm (initialised here when it is not one)."""
    state = docker_client.info()["Swarm"]["LocalNodeState"]
    made = False
    if state != "active":
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"],
            check=True,
            capture_output=True,
        )
        made = True
    yield docker_client
    if made:
        subprocess.run(["docker", "swarm", "leave", "--force"], check=False, capture_output=True)


PLATFORM = """apps_domain: apps.test
hosts:
  - name: cluster
    base_url: unix:///var/run/docker.sock
    runtime: swarm
    publish_mode: host
tiers:
  silo: {isolation: silo}
"""


@pytest.fixture
def sw(nex: Nex, swarm: Any) -> Iterator[Nex]:
    """Nex with one swarm host; the services, secrets and networks of the test's tenants
    are removed afterwards (before the containers, which Swarm would replace)."""
    from mno.nex import runtime_swarm

    nex.configure(PLATFORM)
    runtime_swarm.reset()
    yield nex
    client = nex.client
    for key in nex.tenants:
        for s in client.services.list(filters={"label": f"mno.tenant={key}"}):
            s.remove()
        for sec in client.secrets.list(filters={"label": f"mno.tenant={key}"}):
            _gone(sec.remove)
        deadline = time.monotonic() + 30
        while client.api.containers(all=True, filters={"label": f"mno.tenant={key}"}):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    from mno.nex import namespace
    from mno.store.db import session_scope

    with session_scope(nex.url, write=False) as s:
        ns = namespace.get(s)
    for net in client.networks.list(filters={"label": [f"mno.namespace={ns}", "mno.pool=true"]}):
        _gone(net.remove)
    runtime_swarm.reset()


def _gone(fn: Any) -> None:
    for _ in range(50):
        try:
            fn()
            return
        except Exception:
            time.sleep(0.2)


def _service(nex: Nex, name: str) -> Any:
    view = nex.get(name)
    (service,) = nex.client.services.list(filters={"label": f"mno.instance={view['id']}"})
    return service


def _task_ports(nex: Nex, name: str) -> list[int]:
    service = _service(nex, name)
    ports: set[int] = set()
    for task in service.tasks(filters={"desired-state": "running"}):
        if task["Status"]["State"] != "running":
            continue
        # the container's IPv4 binding (an engine may give IPv6 another port number)
        cid = task["Status"]["ContainerStatus"]["ContainerID"]
        bound = nex.client.api.inspect_container(cid)["NetworkSettings"]["Ports"]["8080/tcp"]
        ports |= {int(b["HostPort"]) for b in bound if ":" not in b["HostIp"]}
    return sorted(ports)


def _converge(nex: Nex, name: str, rounds: int = 10) -> dict[str, Any]:
    for _ in range(rounds):
        nex.tick()
        view = nex.get(name)
        if view["work"] == "idle":
            return view
    raise AssertionError(f"{name} did not settle: {nex.get(name)}")


def _terminate(nex: Nex, name: str) -> None:
    iid = nex.get(name)["id"]
    nex.change("terminate", name)
    assert _converge(nex, iid)["status"] == "terminated"


def test_service_with_two_replicas_is_reached_and_scaled(sw: Nex, store_url: str, cli: Any) -> None:
    tenant = sw.tenant()
    sw.app(volume=False)
    name = sw.create(tenant, "web")
    sw.change("scale", name, replicas=2)
    view = _converge(sw, name)
    assert view["status"] == "running", view
    assert view["host"] == "cluster" and view["replicas"] == 2 and view["tasks"] == "2/2"
    service = _service(sw, name)
    spec = service.attrs["Spec"]
    labels = spec["Labels"]
    assert labels["mno.namespace"] and labels["mno.instance"] == view["id"]
    assert spec["Name"] == f"mno-{labels['mno.namespace']}-{name}"
    router = f"{labels['mno.namespace']}-{name}"
    assert labels[f"traefik.http.routers.{router}.rule"] == f"Host(`{name}.apps.test`)"
    template = spec["TaskTemplate"]
    assert template["Resources"]["Limits"]["MemoryBytes"] == 64 * 1024 * 1024
    assert template["Resources"]["Reservations"]["MemoryBytes"] == 64 * 1024 * 1024
    assert template["RestartPolicy"]["Condition"] == "on-failure"
    assert "/health" in " ".join(template["ContainerSpec"]["Healthcheck"]["Test"])
    update = spec["UpdateConfig"]
    assert (update["Order"], update["FailureAction"]) == ("start-first", "rollback")
    assert update["Monitor"] > 0

    ports = _task_ports(sw, name)
    assert len(ports) == 2
    for port in ports:
        assert get_page(f"http://127.0.0.1:{port}") == (200, "hello from version 1\n")
    assert get_page(view["endpoint"])[0] == 200

    shown = cli.json("instance", "show", name)
    assert (shown["tasks"], shown["tasks_running"], shown["task_error"]) == ("2/2", 2, None)
    (listed,) = cli.json("instance", "list", "--tenant", tenant)
    assert listed["tasks"] == "2/2"

    result = cli("instance", "scale", name, "--replicas", "3")
    assert result.exit_code == 0, result.output
    assert _converge(sw, name)["tasks"] == "3/3"
    assert len(_task_ports(sw, name)) == 3
    sw.change("scale", name, replicas=1)
    view = _converge(sw, name)
    assert view["tasks"] == "1/1" and view["replicas"] == 1
    wait_for(lambda: len(_task_ports(sw, name)) == 1, timeout=30)

    # stop keeps the service at 0 replicas; start brings the replica back
    sw.change("stop", name)
    assert _converge(sw, name)["status"] == "stopped"
    assert _service(sw, name).attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    sw.change("start", name)
    view = _converge(sw, name)
    assert view["status"] == "running" and get_page(view["endpoint"])[0] == 200


def test_scale_is_refused_without_a_swarm_host(nex: Nex) -> None:
    from mno.errors import BadInput

    tenant = nex.tenant()
    nex.app(volume=False)
    name = nex.create(tenant, "web")
    with pytest.raises(BadInput, match="no swarm host"):
        nex.change("scale", name, replicas=2)


def test_rolling_update_passes_and_a_bad_image_is_rolled_back_while_serving(
    sw: Nex, cli: Any
) -> None:
    tenant = sw.tenant()
    sw.app(volume=False)
    name = sw.create(tenant, "web")
    sw.change("scale", name, replicas=2)
    _converge(sw, name)

    result = cli("instance", "update", name, "--image", "mno-test/web:2", "--wait", "--inline")
    assert result.exit_code == 0, result.output
    view = sw.get(name)
    assert view["status"] == "running" and view["image"] == "mno-test/web:2"
    service = _service(sw, name)
    assert service.attrs["UpdateStatus"]["State"] == "completed"
    ports = _task_ports(sw, name)
    assert len(ports) == 2
    for port in ports:
        assert get_page(f"http://127.0.0.1:{port}") == (200, "hello from version 2\n")

    # a bad image: its tasks never pass the health check; Swarm rolls back, and the old
    # tasks serve all along
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            for port in ports:
                try:
                    status, body = get_page(f"http://127.0.0.1:{port}", timeout=5)
                    if (status, body) != (200, "hello from version 2\n"):
                        failures.append(f"{port}: {status} {body!r}")
                    served[0] += 1
                except OSError as exc:
                    failures.append(f"{port}: {exc}")
            time.sleep(0.02)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        result = cli(
            "instance", "update", name, "--image", "mno-test/web:broken", "--wait", "--inline"
        )
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 1, result.output
    assert "rolled back to deploy" in result.output + str(result.stderr)
    assert failures == [] and served[0] > 10
    view = sw.get(name)
    assert view["status"] == "running" and view["image"] == "mno-test/web:2"
    assert "rolled back" in view["last_error"]
    service = _service(sw, name)
    assert service.attrs["UpdateStatus"]["State"] == "rollback_completed"
    assert service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith(
        "mno-test/web:2"
    )
    types = [t for t, _ in sw.events()]
    assert "instance.update_failed" in types


def _task_container(nex: Nex, name: str) -> Any:
    view = nex.get(name)
    found = nex.client.containers.list(filters={"label": f"mno.swarm.instance={view['id']}"})
    assert found, "no running task container"
    return found[0]


def test_secret_is_a_file_and_rotates(sw: Nex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNO_SECRET_CRM_DB", "first-value")
    tenant = sw.tenant()
    sw.app(volume=False)
    name = sw.create(tenant, "web", env={"DB_PASSWORD": "secret:crm_db", "MODE": "prod"})
    view = _converge(sw, name)
    assert view["status"] == "running", view
    spec = _service(sw, name).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert "DB_PASSWORD_FILE=/run/secrets/DB_PASSWORD" in spec["Env"]
    assert "MODE=prod" in spec["Env"]
    assert "first-value" not in str(spec)
    (ref,) = spec["Secrets"]
    assert ref["File"]["Name"] == "DB_PASSWORD" and ref["SecretName"].endswith("-v1")
    code, out = _task_container(sw, name).exec_run(["cat", "/run/secrets/DB_PASSWORD"])
    assert (code, out) == (0, b"first-value")

    monkeypatch.setenv("MNO_SECRET_CRM_DB", "second-value")
    sw.change("restart", name)
    view = _converge(sw, name)
    assert view["status"] == "running", view
    spec = _service(sw, name).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    (ref,) = spec["Secrets"]
    assert ref["SecretName"].endswith("-v2")
    wait_for(
        lambda: (
            _task_container(sw, name).exec_run(["cat", "/run/secrets/DB_PASSWORD"])[1]
            == b"second-value"
        ),
        timeout=30,
    )
    # the old version is removed once no task mounts it
    secrets = sw.client.secrets.list(filters={"label": f"mno.instance={view['id']}"})
    assert [s.name for s in secrets] == [ref["SecretName"]]

    _terminate(sw, name)
    assert sw.client.secrets.list(filters={"label": f"mno.instance={view['id']}"}) == []
    assert sw.client.services.list(filters={"label": f"mno.instance={view['id']}"}) == []


def test_silo_tenants_get_their_own_overlay_network(sw: Nex) -> None:
    sw.app(volume=False)
    silo_a, silo_b, pooled = sw.tenant("silo"), sw.tenant("silo"), sw.tenant("pooled")
    names = [sw.create(t, "web") for t in (silo_a, silo_b, pooled)]
    for name in names:
        assert _converge(sw, name)["status"] == "running"
    nets = []
    for name in names:
        service = _service(sw, name)
        (attached,) = service.attrs["Spec"]["TaskTemplate"]["Networks"]
        net = sw.client.networks.get(attached["Target"])
        nets.append(net)
        assert net.attrs["Driver"] == "overlay" and net.attrs["Attachable"] is True
        assert net.attrs["Labels"]["mno.managed"] == "true"
    assert len({n.id for n in nets}) == 3
    assert nets[0].attrs["Labels"]["mno.tenant"] == silo_a
    assert nets[1].attrs["Labels"]["mno.tenant"] == silo_b
    assert nets[2].attrs["Labels"].get("mno.pool") == "true"
    assert nets[0].name.endswith(f"tenant-{silo_a}") and nets[2].name.endswith("-pooled")

    # a second instance of a silo tenant joins the same network
    sw.app("crm", volume=False)
    other = sw.create(silo_a, "crm")
    _converge(sw, other)
    (attached,) = _service(sw, other).attrs["Spec"]["TaskTemplate"]["Networks"]
    assert attached["Target"] == nets[0].id

    for name in (*names, other):
        _terminate(sw, name)
    wait_for(lambda: not sw.client.networks.list(filters={"label": f"mno.tenant={silo_a}"}), 30)


def test_drift_repair_after_service_rm_and_manual_scale(sw: Nex, store_url: str) -> None:
    tenant = sw.tenant()
    sw.app()  # with a volume: stop-first, pinned to the volume's node
    name = sw.create(tenant, "web")
    view = _converge(sw, name)
    assert view["status"] == "running", view
    spec = _service(sw, name).attrs["Spec"]
    assert spec["UpdateConfig"]["Order"] == "stop-first"
    node = sw.client.info()["Swarm"]["NodeID"]
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id == {node}"]
    mounts = spec["TaskTemplate"]["ContainerSpec"]["Mounts"]
    assert mounts[0]["Target"] == "/www/data" and mounts[0]["Source"] == view["volume"]

    subprocess.run(["docker", "service", "rm", spec["Name"]], check=True, capture_output=True)
    view = _converge(sw, name)
    assert view["status"] == "running" and view["drift"] is None
    assert get_page(view["endpoint"])[0] == 200
    drifts = [p for t, p in sw.events() if t == "instance.drift_detected"]
    assert drifts and "removed outside mno" in drifts[-1]["drift"]

    subprocess.run(
        ["docker", "service", "scale", "--detach", f"{spec['Name']}=0"],
        check=True,
        capture_output=True,
    )
    view = _converge(sw, name)
    assert _service(sw, name).attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 1
    drifts = [p for t, p in sw.events() if t == "instance.drift_detected"]
    assert "scaled to 0 outside mno" in drifts[-1]["drift"]
    assert view["status"] == "running" and view["tasks"] == "1/1"


def test_failing_tasks_are_reported_with_their_error(sw: Nex) -> None:
    tenant = sw.tenant()
    sw.app(volume=False, image="mno-test/web:crash")
    name = sw.create(tenant, "web")
    sw.tick()
    view = sw.get(name)
    assert view["status"] == "failed", view
    assert "tasks of service" in view["last_error"] and "exit" in view["last_error"]


def test_tier_labels_place_on_labelled_nodes_with_spread(sw: Nex, cli: Any) -> None:
    """A tier's labels are node constraints on a swarm (the host's own labels are not
    checked: Swarm places by its nodes'), and its ``spread`` becomes a spread preference;
    the task runs once the node carries the label (set with ``mno host label``)."""
    import uuid

    key = f"mnotest{uuid.uuid4().hex[:6]}"
    sw.configure(PLATFORM + f"  premium: {{labels: {{{key}: gold}}, spread: [zone]}}\n")
    node = sw.client.info()["Swarm"]["NodeID"]
    labelled = cli("host", "label", node, f"{key}=gold", "--host", "cluster")
    assert labelled.exit_code == 0, labelled.output
    try:
        tenant = sw.tenant(tier="premium")
        sw.app(volume=False)
        name = sw.create(tenant, "web")
        view = _converge(sw, name)
        assert view["status"] == "running" and view["tasks"] == "1/1", view
        placement = _service(sw, name).attrs["Spec"]["TaskTemplate"]["Placement"]
        assert placement["Constraints"] == [f"node.labels.{key} == gold"]
        assert placement["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
        assert get_page(view["endpoint"])[0] == 200
    finally:
        cli("host", "label", node, f"{key}-", "--host", "cluster")


def test_a_drained_swarm_has_no_room_until_a_node_is_active_again(sw: Nex, cli: Any) -> None:
    """A swarm host without a ``memory`` setting counts the memory of its ready and
    active nodes, read live: with its only node drained an instance waits in
    ``pending_capacity`` (instead of a service Swarm cannot place), and once the node is
    active again (as when a node joins) the next pass places it."""
    from mno.nex import hosts

    node = sw.client.info()["Swarm"]["NodeID"]
    tenant = sw.tenant()
    sw.app(volume=False)
    drained = cli("host", "drain", node, "--yes", "--host", "cluster")
    assert drained.exit_code == 0, drained.output
    try:
        hosts._swarm_memory.clear()
        name = sw.create(tenant, "web")
        sw.tick()
        view = sw.get(name)
        assert view["status"] == "pending_capacity", view
        assert "cluster: 0 bytes free" in view["last_error"], view
        assert not sw.client.services.list(filters={"label": f"mno.instance={view['id']}"})
    finally:
        activated = cli("host", "activate", node, "--host", "cluster")
        assert activated.exit_code == 0, activated.output
    hosts._swarm_memory.clear()
    view = _converge(sw, name)
    assert view["status"] == "running" and view["tasks"] == "1/1", view
    assert get_page(view["endpoint"])[0] == 200
