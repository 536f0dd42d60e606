"""Hosts: placement across two configured hosts (the same engine through its unix socket
and through a TCP forwarder on 127.0.0.1), host list, and orphaned containers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.nex.conftest import Nex, get_page

SOCKET = "/var/run/docker.sock"


@pytest.fixture
def tcp_engine() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that forwards every connection to the Docker socket."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    stop = threading.Event()

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(SOCKET)
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield port
    stop.set()
    server.close()


def test_placement_uses_the_reachable_host_with_most_free_memory(
    nex: Nex, cli: Any, tcp_engine: int
) -> None:
    nex.configure(
        "apps_domain: apps.test\n"
        "hosts:\n"
        f"  - {{name: alpha, base_url: 'unix://{SOCKET}', memory: 1g, labels: {{zone: a}}}}\n"
        f"  - {{name: beta, base_url: 'tcp://127.0.0.1:{tcp_engine}', memory: 2g,"
        " labels: {zone: b}}\n"
        "  - {name: down, base_url: 'tcp://127.0.0.1:9', memory: 64g}\n"
    )
    tenant = nex.tenant()
    nex.app(memory="512m", multi_instantiable=True)
    names = [nex.create(tenant, "web") for _ in range(4)]
    nex.tick()
    placed = {n: nex.get(n)["host"] for n in names}
    # free memory before each choice: beta 2g > alpha 1g → beta; 1.5g > 1g → beta; a tie at
    # 1g keeps the configured order → alpha; 1g > 512m → beta. The unreachable host with
    # the most memory is never chosen.
    assert sorted(placed.values()) == ["alpha", "beta", "beta", "beta"]
    for n in names:
        view = nex.get(n)
        assert view["status"] == "running", view
        assert get_page(view["endpoint"])[0] == 200

    rows = {r["name"]: r for r in cli.json("host", "list")}
    assert rows["alpha"]["reachable"] and rows["beta"]["reachable"]
    assert rows["alpha"]["version"] == rows["beta"]["version"] is not None
    assert rows["down"]["reachable"] is False and rows["down"]["error"]
    assert rows["beta"]["instances"] == 3 and rows["beta"]["memory_free"] == 512 * 1024**2
    assert rows["alpha"]["instances"] == 1 and rows["alpha"]["memory_free"] == 512 * 1024**2

    # label constraints: an app that needs zone b goes to beta although it is fuller
    nex.app("zoned", labels={"zone": "b"}, memory="256m")
    zoned = nex.create(tenant, "zoned")
    nex.tick()
    assert nex.get(zoned)["host"] == "beta"

    # no host has room for it: the instance waits for room, with the reasons recorded
    nex.app("huge", memory="8g")
    huge = nex.create(tenant, "huge")
    nex.tick()
    view = nex.get(huge)
    assert view["status"] == "pending_capacity" and "no host has room" in view["last_error"]
    assert "alpha: " in view["last_error"] and view["work"] == "pending"


def test_orphans_lists_labelled_containers_nobody_owns(nex: Nex, cli: Any) -> None:
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    namespace = cli.json("host", "list")[0]["namespace"]
    stray = nex.client.containers.create(
        "mno-test/web:1",
        labels={
            "mno.managed": "true",
            "mno.namespace": namespace,
            "mno.instance": "nope",
            "mno.tenant": tenant,
        },
    )
    # another store's container, and one unknown to this store made before namespaces
    for labels in ({"mno.namespace": "other"}, {}):
        nex.client.containers.create(
            "mno-test/web:1",
            labels={"mno.managed": "true", "mno.instance": "nope", "mno.tenant": tenant} | labels,
        )
    # (the engine may hold other stores' containers: look at this test's tenant only)
    rows = [r for r in cli.json("instance", "orphans") if r["tenant"] == tenant]
    assert [r["container"] for r in rows] == [stray.id[:12]]
    assert rows[0]["why"] == "no instance has this id"
    assert name not in {r["name"] for r in rows}


def test_hosts_kept_in_the_store_are_placed_on_with_the_yaml_hosts(
    nex: Nex, cli: Any, tcp_engine: int, tmp_path: Any
) -> None:
    """A DockerHost document applied to the store is a placement target at once, next to
    the hosts of the platform YAML; an Instance document is run there by the provisioner;
    a host with live instances cannot be removed. (The YAML's host is down: the one
    engine may be only one host.)"""
    from mno.errors import Conflict
    from mno.gitops.apply import apply_path
    from mno.store.db import session_scope

    nex.configure(
        "apps_domain: apps.test\nhosts:\n  - {name: alpha, base_url: 'tcp://127.0.0.1:9'}\n"
    )
    docs = tmp_path / "hosts.yaml"
    docs.write_text(
        "kind: DockerHost\nmetadata: {name: beta}\n"
        f"spec: {{base_url: 'tcp://127.0.0.1:{tcp_engine}', labels: {{zone: b}}}}\n"
    )
    with session_scope(nex.url) as s:
        apply_path(s, docs, source="hosts")
    tenant = nex.tenant()
    nex.app("zoned", labels={"zone": "b"})
    name = f"{tenant}-zoned"
    instance = tmp_path / "instance.yaml"
    instance.write_text(
        f"kind: Instance\nmetadata: {{name: {name}}}\nspec: {{tenant: {tenant}, app: zoned}}\n"
    )
    with session_scope(nex.url) as s:
        apply_path(s, instance, source="instances")
    nex.tick()
    view = nex.get(name)
    assert (view["host"], view["status"]) == ("beta", "running"), view
    assert get_page(view["endpoint"])[0] == 200
    rows = {r["name"]: r for r in cli.json("host", "list")}
    assert (rows["alpha"]["source"], rows["beta"]["source"]) == ("platform", "store")
    assert rows["beta"]["reachable"] and rows["beta"]["instances"] == 1
    # prune may not take a host away from under a live instance
    docs.write_text("")
    with pytest.raises(Conflict, match=f"host beta still has 1 live instance\\(s\\): {name}"):
        with session_scope(nex.url) as s:
            apply_path(s, docs, source="hosts", prune=True, allow_empty=True)


def test_adding_a_host_keeps_the_implicit_local_host_and_its_instances(nex: Nex, cli: Any) -> None:
    """With no host declared, instances run on the implicit ``local`` host. Adding a host
    to the store keeps ``local`` as a stored host: its instance stays known, drift repair
    still reaches it, and ``local`` cannot be removed while the instance lives."""
    tenant = nex.tenant()
    nex.app(volume=False)
    name = nex.create(tenant, "web")
    nex.tick()
    assert (nex.get(name)["host"], nex.get(name)["status"]) == ("local", "running")

    out = cli.json("host", "add", "far", "--base-url", "tcp://127.0.0.1:9")
    assert out["name"] == "far"
    rows = {r["name"]: r for r in cli.json("host", "list")}
    assert set(rows) == {"local", "far"}
    assert (rows["local"]["source"], rows["local"]["instances"]) == ("store", 1)
    assert rows["local"]["namespace"] == rows["far"]["namespace"]

    # the container is removed outside mno: the provisioner still finds the host and
    # repairs the instance there
    (container,) = nex.containers(name)
    container.remove(force=True)
    nex.tick()
    view = nex.get(name)
    assert (view["host"], view["status"]) == ("local", "running"), view
    assert view["container_id"] != container.id
    assert get_page(view["endpoint"])[0] == 200

    refused = cli("host", "remove", "local", "--yes")
    assert refused.exit_code == 1
    assert f"host local still has 1 live instance(s): {name}" in refused.stderr
    assert "mno instance terminate" in refused.stderr


def test_a_yaml_that_stops_listing_local_keeps_it_for_its_instances(nex: Nex, cli: Any) -> None:
    tenant = nex.tenant()
    nex.app(volume=False, multi_instantiable=True)
    name = nex.create(tenant, "web")
    nex.tick()
    nex.configure(
        "apps_domain: apps.test\nhosts:\n  - {name: far, base_url: 'tcp://127.0.0.1:9'}\n"
    )
    rows = {r["name"]: r for r in cli.json("host", "list")}
    assert set(rows) == {"far", "local"} and rows["local"]["source"] == "default"
    (container,) = nex.containers(name)
    container.stop(timeout=1)
    nex.tick()
    assert nex.get(name)["status"] == "running"
    assert nex.client.containers.get(container.id).status == "running"
    # no new instance is placed on a host kept only for its instances
    newer = nex.create(tenant, "web")
    nex.tick()
    assert nex.get(newer)["host"] is None


def test_one_engine_is_one_host(nex: Nex, cli: Any, tcp_engine: int) -> None:
    """The local engine added under a name, then again through its socket and through a
    TCP forwarder: the engine's id gives both away, and both are refused."""
    first = cli("host", "add", "main", "--base-url", f"unix://{SOCKET}")
    assert first.exit_code == 0, first.stderr
    for url in (f"unix://{SOCKET}", f"tcp://127.0.0.1:{tcp_engine}"):
        again = cli("host", "add", "twin", "--base-url", url)
        assert again.exit_code == 1, again.stdout
        assert "host twin is the Docker engine of host main" in again.stderr
        assert len(again.stderr.strip().splitlines()) <= 2  # the error and its hint
    assert [r["name"] for r in cli.json("host", "list")] == ["main"]
    # moving a host onto an engine that is a host already is refused too
    cli("host", "add", "far", "--base-url", "tcp://127.0.0.1:9")
    moved = cli("host", "update", "far", "--base-url", f"tcp://127.0.0.1:{tcp_engine}")
    assert moved.exit_code == 1 and "is the Docker engine of host main" in moved.stderr
