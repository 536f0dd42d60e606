"""Isolation on one Docker engine: two stores (each with its own namespace) never touch
each other's containers, a name clash fails the instance instead of taking the container,
and a silo tenant's network is created once however many of its apps start together."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.nex.conftest import Nex, get_page, wait_for


def _tenant(url: str, key: str, tier: str = "pooled") -> None:
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(url) as s:
        tenants.create(s, key, tier=tier)


def _instance_ids(nex: Nex, names: list[str]) -> dict[str, str]:
    return {n: nex.get(n)["id"] for n in names}


def _state(nex: Nex, ids: dict[str, str]) -> dict[str, tuple[str, str, int, str]]:
    """Per instance: its container's id, start time, restart count and status."""
    out = {}
    for name, iid in ids.items():
        (c,) = nex.client.containers.list(all=True, filters={"label": f"mno.instance={iid}"})
        st = c.attrs["State"]
        out[name] = (c.id, st["StartedAt"], c.attrs["RestartCount"], st["Status"])
    return out


def _all_running(nex: Nex, names: list[str]) -> bool:
    nex.tick()
    return all(nex.get(n)["status"] == "running" for n in names)


def test_two_stores_on_one_engine_leave_each_others_containers_alone(
    nex: Nex, store_url: str, tmp_path: Path
) -> None:
    """Store A (SQLite or PostgreSQL) and store B (another SQLite file) hold the same
    tenants, app and instance names; over three reconcile cycles of both provisioners
    (drift detection included) neither stops, removes, restarts or adopts the other's
    containers."""
    other = Nex(f"sqlite:///{tmp_path / 'other.db'}", nex.home, nex.client, nex.config_path)
    keys = [f"t{uuid.uuid4().hex[:10]}" for _ in range(5)]
    nex.tenants.extend(keys)  # the cleanup removes both stores' containers
    for store in (nex, other):
        for key in keys:
            _tenant(store.url, key)
        store.app(volume=True)
    a_names = [nex.create(k, "web") for k in keys]
    wait_for(lambda: _all_running(nex, a_names), timeout=90, every=0)
    a_ids = _instance_ids(nex, a_names)
    before = _state(nex, a_ids)

    b_names = [other.create(k, "web") for k in keys]
    assert b_names == a_names  # the very same instance names in both stores
    wait_for(lambda: _all_running(other, b_names), timeout=90, every=0)
    b_ids = _instance_ids(other, b_names)
    b_before = _state(other, b_ids)
    for _ in range(3):
        other.tick()
        nex.tick()

    assert _state(nex, a_ids) == before
    assert _state(other, b_ids) == b_before
    a_containers = {v[0] for v in before.values()}
    b_containers = {v[0] for v in b_before.values()}
    assert not a_containers & b_containers
    for store, names, mine in ((nex, a_names, a_containers), (other, b_names, b_containers)):
        for name in names:
            view = store.get(name)
            assert view["status"] == "running" and view["drift"] is None, view
            assert get_page(view["endpoint"])[0] == 200
        recorded = {store.get(n)["container_id"] for n in names}
        assert recorded == mine
    # each store's namespace is in the names and labels of its own containers
    namespaces = []
    for ids in (a_ids, b_ids):
        found = set()
        for iid in ids.values():
            (c,) = nex.client.containers.list(all=True, filters={"label": f"mno.instance={iid}"})
            found.add(c.labels["mno.namespace"])
            assert c.name.startswith(f"mno-{c.labels['mno.namespace']}-")
        namespaces.append(found)
    assert len(namespaces[0]) == len(namespaces[1]) == 1 and namespaces[0] != namespaces[1]


@pytest.mark.parametrize("foreign", ["unlabelled", "other-namespace"])
def test_a_name_clash_fails_the_instance_and_leaves_the_container_alone(
    nex: Nex, foreign: str
) -> None:
    from mno.nex import containers, snapshot

    tenant = nex.tenant()
    nex.app(volume=False)
    name = nex.create(tenant, "web")
    snap = snapshot.load(uuid.UUID(nex.get(name)["id"]), nex.url)
    assert snap is not None
    taken = containers.container_name(snap, snap.deploy + 1)
    labels = {"mno.tenant": tenant}  # so the cleanup finds it
    if foreign == "other-namespace":
        labels |= {"mno.managed": "true", "mno.namespace": "0ther", "mno.instance": "x"}
    squatter = nex.client.containers.create("mno-test/web:1", name=taken, labels=labels)
    nex.tick()

    view = nex.get(name)
    assert view["status"] == "failed", view
    assert f"container {taken} exists and is not this instance's" in view["last_error"]
    squatter.reload()
    assert squatter.status == "created"  # never started, adopted or removed
    assert view["container_id"] in (None, "") or view["container_id"] != squatter.id


def _networks(nex: Nex, key: str) -> list[Any]:
    return nex.client.networks.list(filters={"label": f"mno.tenant={key}"})


def test_a_silo_tenants_apps_provisioned_at_once_share_one_network(nex: Nex, cli: Any) -> None:
    codes = [f"app{i}" for i in range(6)]
    nex.configure(
        f"apps_domain: apps.test\ntiers:\n  silo: {{mode: docker, apps: [{', '.join(codes)}]}}\n"
    )
    for code in codes:
        nex.app(code, volume=False)
    key = nex.tenant(tier="silo", status="pending_provision")
    cli.json("tenant", "provision", key)
    nex.tick(concurrency=6)
    wait_for(lambda: _all_running(nex, [f"{c}-{key}" for c in codes]), timeout=60, every=0)

    (network,) = _networks(nex, key)
    views = [nex.get(f"{c}-{key}") for c in codes]
    assert {v["network"] for v in views} == {network.name}
    network.reload()
    assert len(network.attrs["Containers"]) == len(codes)
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(nex.url, write=False) as s:
        assert tenants.get(s, key).status == "active"


def test_concurrent_passes_create_a_tenant_network_once(nex: Nex, store_url: str) -> None:
    """Eight threads prepare the same silo tenant's network at the same moment (under the
    tenant's lock in the store: PostgreSQL's advisory lock, SQLite's writer lock)."""
    from mno.nex import containers, hosts, runtime_docker, snapshot

    key = nex.tenant(tier="silo")
    nex.app(volume=False)
    snap = snapshot.load(uuid.UUID(nex.get(nex.create(key, "web"))["id"]), nex.url)
    assert snap is not None
    rt = runtime_docker.runtime(hosts.configured()[0])
    gate = threading.Barrier(8)
    ids: list[str | None] = []
    errors: list[BaseException] = []

    def one() -> None:
        gate.wait()
        try:
            ids.append(containers.prepare(snap, rt))
        except BaseException as exc:  # shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (network,) = _networks(nex, key)
    assert set(ids) == {network.id}


def test_a_duplicate_network_left_by_an_earlier_race_is_merged(nex: Nex) -> None:
    from mno.nex import containers, snapshot

    key = nex.tenant(tier="silo")
    nex.app(volume=False)
    name = nex.create(key, "web")
    snap = snapshot.load(uuid.UUID(nex.get(name)["id"]), nex.url)
    assert snap is not None
    network = containers.network_name(snap)
    assert network
    labels = {"mno.managed": "true", "mno.tenant": key}
    for _ in range(2):
        nex.client.api.create_network(network, driver="bridge", labels=labels)
    assert len(_networks(nex, key)) == 2

    nex.tick()
    view = nex.get(name)
    assert view["status"] == "running", view
    (left,) = _networks(nex, key)
    assert left.name == network == view["network"]
    left.reload()
    assert view["container_id"] in left.attrs["Containers"]


def test_containers_made_before_namespaces_stay_the_stores_own(nex: Nex, cli: Any) -> None:
    """An instance whose container, volume and names date from before namespaces (no
    ``mno.namespace`` label, ``mno-<name>-<deploy>``): drift leaves it alone while it runs,
    restarts it when it is stopped outside mno, orphans does not list it, and an update
    keeps its data volume under the old name."""
    import sqlalchemy as sa

    from mno.store.db import session_scope
    from mno.store.models.nex import Instance
    from tests.nex import images

    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    view = nex.get(name)
    (current,) = nex.containers(name)
    # the same instance as an older mno made it
    volume = f"mno-{name}-{view['id'][:8]}-data"
    nex.client.volumes.create(volume, labels={"mno.managed": "true", "mno.tenant": tenant})
    labels = {k: v for k, v in current.labels.items() if k != "mno.namespace"}
    legacy = nex.client.containers.run(
        "mno-test/web:1",
        name=f"mno-{name}-7",
        labels=labels | {"mno.deploy": "7"},
        ports={f"{images.PORT}/tcp": ("127.0.0.1", None)},
        volumes={volume: {"bind": "/www/data", "mode": "rw"}},
        detach=True,
    )
    legacy.exec_run(["sh", "-c", "echo old > /www/data/note.txt"])
    current.remove(force=True)
    with session_scope(nex.url) as s:
        s.execute(
            sa.update(Instance)
            .where(Instance.name == name)
            .values(container_id=legacy.id, container_name=legacy.name, deploy=7, volume=volume)
        )
    legacy.reload()
    started = legacy.attrs["State"]["StartedAt"]
    for _ in range(2):
        nex.tick()
    legacy.reload()
    assert (legacy.status, legacy.attrs["State"]["StartedAt"]) == ("running", started)
    assert nex.get(name)["drift"] is None
    assert [r for r in cli.json("instance", "orphans") if r["tenant"] == tenant] == []

    legacy.stop(timeout=1)
    nex.tick()
    legacy.reload()
    assert legacy.status == "running" and nex.get(name)["status"] == "running"
    assert nex.get(name)["container_id"] == legacy.id

    nex.change("update", name, image="mno-test/web:2")
    nex.tick()
    view = nex.get(name)
    assert view["status"] == "running" and view["volume"] == volume, view
    assert get_page(view["endpoint"], "/data/note.txt") == (200, "old\n")
    (new,) = nex.containers(name)
    assert new.labels["mno.namespace"] and new.name.startswith(
        f"mno-{new.labels['mno.namespace']}-"
    )


def test_a_foreign_network_with_the_tenants_name_is_left_alone(nex: Nex) -> None:
    from mno.nex import containers, snapshot

    key = nex.tenant(tier="silo")
    nex.app(volume=False)
    name = nex.create(key, "web")
    snap = snapshot.load(uuid.UUID(nex.get(name)["id"]), nex.url)
    assert snap is not None
    network = containers.network_name(snap)
    assert network
    foreign = nex.client.networks.create(network, driver="bridge", labels={"mno.tenant": key})
    nex.tick()
    view = nex.get(name)
    assert view["status"] == "failed", view
    assert f"network {network} exists and is not this platform's" in view["last_error"]
    (left,) = _networks(nex, key)
    assert left.id == foreign.id
