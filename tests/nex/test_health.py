"""Health of instances on a real Docker engine: the endpoint follows a restart outside
mno, a failed update rolls back at once and is not retried, a crash says why, and the
health-check interval is the app's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import counts
from tests.nex.conftest import Nex, get_page, wait_for


def _audit(nex: Nex, action: str) -> list[Any]:
    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.core import AuditEntry

    with session_scope(nex.url, write=False) as s:
        return list(s.exec(select(AuditEntry).where(AuditEntry.action == action)).all())


def test_endpoint_follows_a_restart_outside_mno(nex: Nex, store_url: str) -> None:
    """`docker restart` publishes the port on a new host port: the next pass re-reads it,
    records it with an event, and the stored endpoint serves again."""
    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    before = nex.get(name)
    assert get_page(before["endpoint"])[0] == 200
    (container,) = nex.containers(name)

    def moved() -> bool:
        container.restart(timeout=1)
        container.reload()
        bound = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"]
        return bool(bound) and not before["endpoint"].endswith(f":{bound[0]['HostPort']}")

    wait_for(moved, timeout=30, every=0)  # a restart may get the same port again
    result = nex.tick()
    assert result.details.get("endpoints_changed") == 1
    view = nex.get(name)
    assert view["status"] == "running" and view["container_id"] == before["container_id"]
    assert view["endpoint"] != before["endpoint"]
    assert wait_for(lambda: get_page(view["endpoint"])[0] == 200)
    (event,) = [p for t, p in nex.events() if t == "instance.endpoint_changed"]
    assert event["endpoint"] == view["endpoint"] and event["previous"] == before["endpoint"]
    (row,) = _audit(nex, "instance.endpoint_changed")
    assert row.diff["after"] == {"endpoint": view["endpoint"]}
    # nothing moved since: a further pass writes nothing
    written = counts(nex.url)
    assert "endpoints_changed" not in nex.tick().details
    assert counts(nex.url) == written


def test_failed_update_rolls_back_at_once_and_is_not_retried(
    nex: Nex, cli: Any, store_url: str
) -> None:
    """With a volume (stop-first): the bad image fails its health gate once, the old
    container serves again with its data, the spec goes back and nothing is retried."""
    from mno import clock

    tenant = nex.tenant()
    nex.app()
    name = nex.create(tenant, "web")
    nex.tick()
    (old,) = nex.containers(name)
    old.exec_run(["sh", "-c", "echo kept > /www/data/note.txt"])
    first = nex.get(name)
    assert first["image"] == "mno-test/web:1"

    nex.change("update", name, image="mno-test/web:broken")
    result = nex.tick(health_start_period="0s")
    assert (result.done, result.retried, result.failed) == (1, 0, 0)
    view = nex.get(name)
    assert view["status"] == "running" and view["work"] == "idle"
    assert view["container_id"] == first["container_id"]
    assert view["image"] == "mno-test/web:1"  # the spec the old container runs
    assert view["last_error"].startswith(
        "update to mno-test/web:broken failed its health check; rolled back to deploy 1: "
    )
    assert get_page(view["endpoint"]) == (200, "hello from version 1\n")
    assert get_page(view["endpoint"], "/data/note.txt") == (200, "kept\n")
    assert [c.id for c in nex.containers(name)] == [old.id]  # the new one is gone
    failed = [p for t, p in nex.events() if t == "instance.update_failed"]
    assert len(failed) == 1 and failed[0]["image"] == "mno-test/web:broken"
    (row,) = _audit(nex, "instance.rollback")
    assert row.diff["before"]["image"] == "mno-test/web:broken"
    assert row.diff["after"]["image"] == "mno-test/web:1"

    # not retried, however long one waits
    clock.advance(timedelta(hours=2))
    try:
        assert nex.tick().claimed == 0
    finally:
        clock.set_now(None)
    assert len([t for t, _ in nex.events() if t == "instance.update_failed"]) == 1

    shown = cli("instance", "show", name)
    assert shown.exit_code == 0
    assert "update to mno-test/web:broken failed its health check" in shown.stdout
    assert "rolled back to deploy 1" in shown.stdout

    # a good update goes through and clears the error
    nex.change("update", name, image="mno-test/web:2")
    nex.tick()
    view = nex.get(name)
    assert view["image"] == "mno-test/web:2" and view["last_error"] is None
    assert get_page(view["endpoint"], "/data/note.txt") == (200, "kept\n")


def test_failed_rolling_update_keeps_the_old_container_serving(nex: Nex) -> None:
    """Without a volume the old container never stops; a crashing image is reported
    with its exit code and output."""
    tenant = nex.tenant()
    nex.app(volume=False)
    name = nex.create(tenant, "web")
    nex.tick()
    first = nex.get(name)
    nex.change("update", name, image="mno-test/web:crash", env={"MODE": "x"})
    result = nex.tick()
    assert (result.done, result.retried) == (1, 0)
    view = nex.get(name)
    assert view["status"] == "running" and view["container_id"] == first["container_id"]
    assert view["endpoint"] == first["endpoint"]
    assert view["image"] == "mno-test/web:1" and view["env"] == {}
    assert view["last_error"].startswith(
        "update to mno-test/web:crash failed; rolled back to deploy 1: container exited with code 3"
    )
    assert "fatal: cannot open database" in view["last_error"]
    assert get_page(view["endpoint"]) == (200, "hello from version 1\n")


def test_a_crash_reports_exit_code_oom_flag_and_last_log_lines(nex: Nex) -> None:
    tenant = nex.tenant()
    nex.app("crashy", image="mno-test/web:crash", volume=False)
    nex.app("hungry", image="mno-test/web:oom", volume=False, memory="32m")
    crashy = nex.create(tenant, "crashy")
    hungry = nex.create(tenant, "hungry")
    result = nex.tick(max_attempts=1)
    assert result.failed == 2
    error = nex.get(crashy)["last_error"]
    assert error.removeprefix("Unhealthy: ").startswith("container exited with code 3"), error
    assert "OOM" not in error
    assert "last log lines:" in error
    assert "booting" in error and "fatal: cannot open database /www/data/db" in error
    error = nex.get(hungry)["last_error"]
    assert error.removeprefix("Unhealthy: ").startswith(
        "container exited with code 137 (OOM-killed"
    ), error
    assert "filling memory" in error
    assert "None" not in error


def test_health_interval_is_the_apps(nex: Nex, cli: Any) -> None:
    """The app's interval is Docker's once running; readiness still comes at once (mno
    checks while the container starts, or Docker's StartInterval where the engine has
    it), and a failing check is still caught although Docker checks once an hour."""
    tenant = nex.tenant()
    nex.app("slow", volume=False, health_interval="1h")
    nex.app("bad", image="mno-test/web:broken", volume=False, health_interval="1h")
    nex.app("plain", volume=False)
    slow = nex.create(tenant, "slow")
    bad = nex.create(tenant, "bad")
    plain = nex.create(tenant, "plain")
    result = nex.tick(max_attempts=1, health_start_period="0s", health_interval="10s")
    assert (result.done, result.failed) == (2, 1)

    view = nex.get(slow)
    assert view["status"] == "running" and get_page(view["endpoint"])[0] == 200
    (container,) = nex.containers(slow)
    check = container.attrs["Config"]["Healthcheck"]
    assert check["Interval"] == 3600 * 10**9
    (container,) = nex.containers(plain)
    assert container.attrs["Config"]["Healthcheck"]["Interval"] == 10 * 10**9  # the option's
    error = nex.get(bad)["last_error"]
    assert error.removeprefix("Unhealthy: ").startswith("health check failed: exit 1"), error

    # the CLI sets, shows and checks it
    shown = cli.json("app", "update", "plain", "--health-interval", "30s")
    assert shown["health_interval"] == "30s"
    assert cli.json("app", "show", "plain")["health_interval"] == "30s"
    refused = cli("app", "update", "plain", "--health-interval", "0s")
    assert refused.exit_code == 2 and "health interval" in refused.stderr
    cleared = cli.json("app", "update", "plain", "--health-interval", "")
    assert cleared["health_interval"] is None


def test_default_health_interval_is_ten_seconds() -> None:
    from mno.agents.provisioner import DEFAULT_OPTIONS
    from mno.nex.containers import Options

    assert Options.from_dict(DEFAULT_OPTIONS).health_interval_s == 10.0
    assert Options.from_dict(DEFAULT_OPTIONS).health_start_interval_s == 1.0


def test_start_interval_is_sent_where_the_engine_has_it(nex: Nex, monkeypatch: Any) -> None:
    """On an engine with StartInterval (API 1.44) the container is created with it; an
    older engine ignores the field, and mno's own checks still make it ready."""
    from mno.nex import runtime_docker

    sent: list[dict[str, Any]] = []
    create = runtime_docker.Runtime._create_with_start_interval

    def spy(self: Any, args: dict[str, Any], spec: Any) -> Any:
        out = create(self, args, spec)
        sent.append(self.client.api.inspect_container(out["Id"])["Config"])
        return out

    monkeypatch.setattr(runtime_docker.Runtime, "has_start_interval", lambda self: True)
    monkeypatch.setattr(runtime_docker.Runtime, "_create_with_start_interval", spy)
    tenant = nex.tenant()
    nex.app(volume=False, health_interval="1h", env={"GREETING": "hi"})
    name = nex.create(tenant, "web")
    result = nex.tick(health_start_interval="500ms")
    assert result.done == 1
    view = nex.get(name)
    assert view["status"] == "running" and get_page(view["endpoint"])[0] == 200
    (config,) = sent
    assert config["Healthcheck"]["Interval"] == 3600 * 10**9
    assert "/health" in " ".join(config["Healthcheck"]["Test"])
    assert "GREETING=hi" in config["Env"]
    assert config["Labels"]["mno.instance"] == view["id"]
    engine_api = nex.client.version()["ApiVersion"]
    if runtime_docker._api_at_least(engine_api, runtime_docker.START_INTERVAL_API):
        assert config["Healthcheck"]["StartInterval"] == 5 * 10**8
