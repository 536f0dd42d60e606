"""Instances on a real Docker engine: create, stop/start, rolling update, terminate,
backup/restore, drift repair, failed health checks and retries."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mno.errors import Conflict
from tests.conftest import counts
from tests.nex.conftest import Nex, get_page


def test_create_runs_healthy_with_labels_limits_and_events(nex: Nex, store_url: str) -> None:
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web", domains=["crm.acme.example"], env={"GREETING": "hi"})
    assert name == f"web-{tenant}"
    assert nex.get(name)["status"] == "staged"

    result = nex.tick()
    assert (result.claimed, result.done) == (1, 1)
    view = nex.get(name)
    assert view["status"] == "running" and view["work"] == "idle"
    assert view["url"] == f"http://{name}.apps.test"
    assert view["endpoint"].startswith("http://127.0.0.1:")
    assert get_page(view["endpoint"]) == (200, "hello from version 1\n")

    (container,) = nex.containers(name)
    attrs = container.attrs
    labels = attrs["Config"]["Labels"]
    assert labels["mno.managed"] == "true"
    assert labels["mno.tenant"] == tenant and labels["mno.app"] == "web"
    router = f"{labels['mno.namespace']}-{name}"  # two stores' routers never share a name
    assert labels[f"traefik.http.routers.{router}.rule"] == (
        f"Host(`{name}.apps.test`) || Host(`crm.acme.example`)"
    )
    assert labels[f"traefik.http.services.{router}.loadbalancer.server.port"] == "8080"
    host_config = attrs["HostConfig"]
    assert host_config["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert host_config["Memory"] == 64 * 1024 * 1024
    assert host_config["PidsLimit"] == 512
    assert "/health" in " ".join(attrs["Config"]["Healthcheck"]["Test"])
    assert attrs["Config"]["Healthcheck"]["StartPeriod"] == 10 * 10**9
    assert "GREETING=hi" in attrs["Config"]["Env"]
    assert any(m["Destination"] == "/www/data" for m in attrs["Mounts"])

    types = [t for t, _ in nex.events()]
    assert types == ["instance.created", "instance.provisioning", "instance.running"]

    # a second pass has nothing to do
    assert nex.tick().claimed == 0


def test_stop_and_start(nex: Nex) -> None:
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    nex.change("stop", name)
    nex.tick()
    view = nex.get(name)
    assert view["status"] == "stopped" and view["stopped_at"]
    (container,) = nex.containers(name)
    assert container.status == "exited"
    nex.change("start", name)
    nex.tick()
    view = nex.get(name)
    assert view["status"] == "running"
    assert get_page(view["endpoint"])[0] == 200
    assert [t for t, _ in nex.events() if t in ("instance.stopped", "instance.running")] == [
        "instance.running",
        "instance.stopped",
        "instance.running",
    ]


def test_rolling_update_serves_without_a_gap(nex: Nex) -> None:
    """Without a volume the new container is healthy before the route (the endpoint a
    router follows) switches to it, and the old one stops only after that."""
    tenant = nex.tenant()
    nex.app(volume=False)
    name = nex.create(tenant, "web")
    nex.tick()
    old = nex.get(name)["container_id"]
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.append(get_page(nex.get(name)["endpoint"]))
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        time.sleep(0.2)
        nex.change("update", name, image="mno-test/web:2")
        nex.tick()
        time.sleep(0.3)
    finally:
        stop.set()
        poller.join()
    assert all(status == 200 for status, _ in seen), [s for s in seen if s[0] != 200][:3]
    bodies = [body for _, body in seen]
    assert "hello from version 1\n" in bodies and bodies[-1] == "hello from version 2\n"
    view = nex.get(name)
    assert view["status"] == "running" and view["image"] == "mno-test/web:2"
    assert view["container_id"] != old
    assert [c.id for c in nex.containers(name)] == [view["container_id"]]


def test_update_with_a_volume_stops_first_and_keeps_data(nex: Nex) -> None:
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    (old,) = nex.containers(name)
    old.exec_run(["sh", "-c", "echo kept > /www/data/note.txt"])
    nex.change("update", name, image="mno-test/web:2")
    nex.tick()
    view = nex.get(name)
    assert get_page(view["endpoint"]) == (200, "hello from version 2\n")
    assert get_page(view["endpoint"], "/data/note.txt") == (200, "kept\n")
    assert len(nex.containers(name)) == 1


def test_terminate_purges_and_frees_the_name(nex: Nex) -> None:
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web", domains=["shop.example.com"])
    nex.tick()
    other = nex.tenant()
    with pytest.raises(Conflict, match="already routed"):
        nex.create(other, "web", domains=["shop.example.com"])
    volume = nex.get(name)["volume"]
    nex.change("terminate", name, purge_data=True)
    nex.tick()
    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.nex import Instance

    with session_scope(nex.url, write=False) as s:
        (inst,) = s.exec(select(Instance)).all()
        assert inst.status == "terminated" and inst.live_name is None and inst.terminated_at
        iid = str(inst.id)
    assert nex.client.containers.list(all=True, filters={"label": f"mno.instance={iid}"}) == []
    assert nex.client.volumes.list(filters={"name": volume}) == []
    last_type, last = nex.events()[-1]
    assert last_type == "instance.terminated"
    assert last["released_domains"] == ["shop.example.com"]
    # the name and the domain can be used again
    assert nex.create(tenant, "web") == name
    taken = nex.create(other, "web", domains=["shop.example.com"])
    assert nex.get(taken)["domains"] == ["shop.example.com"]


def test_backup_terminate_restore_keeps_the_files(nex: Nex, cli: Any, tmp_path: Path) -> None:
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    (container,) = nex.containers(name)
    container.exec_run(["sh", "-c", "echo 'precious data' > /www/data/file.txt"])
    backup = tmp_path / "web.tar"
    result = cli.json("instance", "export", name, "--out", str(backup))
    assert backup.is_file() and Path(f"{backup}.sha256").read_text().startswith(result["sha256"])

    nex.change("terminate", name, purge_data=True)
    nex.tick()
    name = nex.create(tenant, "web")
    nex.tick()
    assert get_page(nex.get(name)["endpoint"], "/data/file.txt")[0] == 404

    # a damaged copy is refused and changes nothing
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(backup.read_bytes()[:-10] + b"0123456789")
    Path(f"{damaged}.sha256").write_text(Path(f"{backup}.sha256").read_text())
    before = counts(nex.url)
    bad = cli("instance", "restore", name, str(damaged), "--yes")
    assert bad.exit_code == 2 and "checksum" in bad.stderr
    assert counts(nex.url) == before

    restored = cli.json("instance", "restore", name, str(backup), "--yes")
    assert restored["status"] == "running"
    view = nex.get(name)
    assert get_page(view["endpoint"], "/data/file.txt") == (200, "precious data\n")
    assert get_page(view["endpoint"]) == (200, "hello from version 1\n")
    # the new container's endpoint is announced (instance.endpoint_changed) for routers
    types = [t for t, _ in nex.events() if t != "instance.endpoint_changed"]
    assert types[-2:] == ["instance.running", "instance.restored"]


def test_drift_is_repaired_or_reported(nex: Nex) -> None:
    tenant = nex.tenant()
    nex.app()
    running = nex.create(tenant, "web", name="drift-a")
    stopped = nex.create(tenant, "web", name="drift-b")
    nex.tick()
    nex.change("stop", stopped)
    nex.tick()
    (c,) = nex.containers(running)
    c.remove(force=True)
    (s,) = nex.containers(stopped)
    s.remove(force=True)

    result = nex.tick()
    assert result.details["drift_repairs"] == 1 and result.details["drift_reported"] == 1
    view = nex.get(running)
    assert view["status"] == "running" and view["drift"] is None  # repaired
    assert get_page(view["endpoint"]) == (200, "hello from version 1\n")
    assert view["container_id"] != c.id
    other = nex.get(stopped)
    assert other["status"] == "stopped" and "removed outside mno" in other["drift"]
    drift_events = [p["name"] for t, p in nex.events() if t == "instance.drift_detected"]
    assert sorted(drift_events) == ["drift-a", "drift-b"]

    # stopped outside mno: started again
    (c2,) = nex.containers(running)
    c2.stop(timeout=1)
    nex.tick()
    view = nex.get(running)
    assert view["status"] == "running" and get_page(view["endpoint"])[0] == 200


def test_failed_health_check_fails_then_retries(nex: Nex) -> None:
    from mno import clock

    tenant = nex.tenant()
    nex.app(image="mno-test/web:broken", volume=False)
    name = nex.create(tenant, "web")
    result = nex.tick(max_attempts=2, health_start_period="0s")
    assert result.retried == 1
    view = nex.get(name)
    assert view["status"] == "failed" and "health check failed" in view["last_error"]
    assert view["work"] == "pending" and view["attempts"] == 1
    assert nex.events()[-1][0] == "instance.failed"
    assert nex.tick(max_attempts=2, health_start_period="0s").claimed == 0  # backing off

    clock.advance(timedelta(seconds=60))
    try:
        result = nex.tick(max_attempts=2, health_start_period="0s")
        assert result.failed == 1  # second attempt, the last
        view = nex.get(name)
        assert view["status"] == "failed" and view["work"] == "failed"
        clock.advance(timedelta(hours=1))
        assert nex.tick(max_attempts=2, health_start_period="0s").claimed == 0  # given up
    finally:
        clock.set_now(None)

    # a fixed image brings it back
    nex.change("update", name, image="mno-test/web:1")
    nex.tick()
    view = nex.get(name)
    assert view["status"] == "running" and view["last_error"] is None
    assert len(nex.containers(name)) == 1


def test_unreachable_docker_is_a_clean_error(nex: Nex, cli: Any, tmp_path: Path) -> None:
    nex.configure(
        f"apps_domain: apps.test\nhosts:\n  - name: gone\n"
        f"    base_url: unix://{tmp_path}/no-such.sock\n"
    )
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    result = nex.tick()
    assert result.done == 1 and result.failed == 0
    view = nex.get(name)
    assert view["status"] == "staged" and view["work"] == "pending"
    assert "no Docker host is reachable" in view["last_error"]
    assert nex.tick().claimed == 0  # backing off, not spinning
    hosts = cli.json("host", "list")
    assert hosts[0]["name"] == "gone" and hosts[0]["reachable"] is False and hosts[0]["error"]
    show = cli("instance", "logs", name)
    assert show.exit_code == 1 and "no container yet" in show.stderr


@pytest.mark.parametrize("bad", ["cloud-app", "private", "dup", "env"])
def test_bad_creates_write_nothing(nex: Nex, cli: Any, bad: str) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import apps

    tenant = nex.tenant()
    other = nex.tenant()
    nex.app()
    with session_scope(nex.url) as s:
        apps.create(s, "Cloud", code="cloud-app", stack="cloud")
        apps.create(s, "Private", code="private", stack="nex", image="x", port=80, owner=other)
    nex.create(tenant, "web")
    before = counts(nex.url)
    args = {
        "cloud-app": (tenant, "cloud-app"),
        "private": (tenant, "private"),
        "dup": (tenant, "web"),
        "env": (tenant, "web", "--name", "x2", "--env", "1BAD=v"),
    }[bad]
    result = cli("instance", "create", *args)
    assert result.exit_code == (1 if bad == "dup" else 2), result.stderr
    assert result.stderr.startswith("Error:") and len(result.stderr.strip().splitlines()) <= 2
    assert counts(nex.url) == before
