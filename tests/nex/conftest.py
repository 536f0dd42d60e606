"""Nex fixtures: the real local Docker engine, locally built test images, a platform YAML,
and helpers to run the provisioner and read instances.

Containers, volumes and networks a test creates carry its tenants' keys (random per
test) and are removed afterwards; nothing else on the engine is touched.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.nex import images


@pytest.fixture(scope="session")
def docker_client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the suite needs the engine; scripts/test starts one
        pytest.fail(f"no Docker engine: {exc} (scripts/test installs and starts dockerd)")
    images.remove_leftovers(client)
    images.ensure(client)
    return client


FAST = {
    "health_interval": "250ms",
    "health_retries": 2,
    "health_start_period": "10s",  # a slow start on a busy host is not a failure
    "ready_timeout": "20s",
    "retry_base": "1s",
    "stop_timeout_s": 2,
}


@dataclass
class Nex:
    url: str
    home: Path
    client: Any
    config_path: Path
    tenants: list[str] = field(default_factory=list)

    def configure(self, text: str) -> None:
        from mno import platform
        from mno.nex import hosts, runtime_docker

        self.config_path.write_text(text)
        platform.clear_cache()
        runtime_docker.reset()
        hosts._probes.clear()

    def tenant(self, tier: str = "pooled", status: str = "active") -> str:
        from mno.store.db import session_scope
        from mno.tenancy import tenants

        key = f"t{uuid.uuid4().hex[:10]}"
        with session_scope(self.url) as s:
            tenants.create(s, key, tier=tier, status=status)
        self.tenants.append(key)
        return key

    def app(
        self,
        code: str = "web",
        *,
        image: str = "mno-test/web:1",
        volume: bool = True,
        owner: str | None = None,
        **fields: Any,
    ) -> str:
        from mno.store.db import session_scope
        from mno.tenancy import apps

        with session_scope(self.url) as s:
            apps.create(
                s,
                code.title(),
                code=code,
                stack="nex",
                access="any",
                image=image,
                port=images.PORT,
                health_path="/health",
                volume_path="/www/data" if volume else None,
                memory=fields.pop("memory", "64m"),
                **fields,
            )
        return code

    def create(self, tenant: str, app: str, **kwargs: Any) -> str:
        from mno.nex import instances
        from mno.store.db import session_scope

        with session_scope(self.url) as s:
            return instances.create(s, tenant, app, **kwargs).name

    def tick(self, **options: Any) -> Any:
        from mno.agents import provisioner
        from mno.agents.base import TickContext

        ctx = TickContext(
            agent="provisioner",
            db_url=self.url,
            batch_size=8,
            concurrency=4,
            lease_for=timedelta(minutes=5),
            options={**FAST, **options},
        )
        return provisioner.tick(ctx)

    def get(self, name: str) -> dict[str, Any]:
        from mno.nex import instances
        from mno.store.db import session_scope

        with session_scope(self.url, write=False) as s:
            inst = instances.get(s, name)
            return instances.view(s, inst).as_dict() | {"work": inst.work}

    def change(self, verb: str, name: str, **kwargs: Any) -> None:
        from mno.nex import instances
        from mno.store.db import session_scope

        with session_scope(self.url) as s:
            getattr(instances, verb)(s, name, **kwargs)

    def events(self, prefix: str = "instance.") -> list[tuple[str, dict[str, Any]]]:
        from mno.store import outbox
        from mno.store.db import session_scope

        with session_scope(self.url, write=False) as s:
            rows = outbox.list_events(s, limit=10_000)
            rows = sorted(rows, key=lambda e: e.seq or 0)
            return [(e.type, e.payload) for e in rows if e.type.startswith(prefix)]

    def containers(self, name: str) -> list[Any]:
        iid = self.get(name)["id"]
        return self.client.containers.list(all=True, filters={"label": f"mno.instance={iid}"})

    def cleanup(self) -> None:
        for key in self.tenants:
            for c in self.client.containers.list(all=True, filters={"label": f"mno.tenant={key}"}):
                c.remove(force=True)
            for v in self.client.volumes.list(filters={"label": f"mno.tenant={key}"}):
                try:
                    v.remove(force=True)
                except Exception:
                    pass
            for n in self.client.networks.list(filters={"label": f"mno.tenant={key}"}):
                try:
                    n.remove()
                except Exception:
                    pass


def get_page(endpoint: str, path: str = "/", timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(endpoint + path, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def wait_for(predicate: Any, timeout: float = 20.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


@pytest.fixture
def nex_store(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def nex(
    request: pytest.FixtureRequest,
    docker_client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Nex]:
    """Nex on the local engine; the store is SQLite unless the test asks for ``store_url``."""
    from cryptography.fernet import Fernet

    from mno import platform
    from mno.nex import hosts, runtime_docker

    url = (
        request.getfixturevalue("store_url")
        if "store_url" in request.fixturenames
        else request.getfixturevalue("sqlite_url")
    )
    config = tmp_path / "platform.yaml"
    config.write_text("apps_domain: apps.test\n")
    monkeypatch.setenv("MNO_CONFIG", str(config))
    monkeypatch.setenv("MNO_MASTER_KEY", Fernet.generate_key().decode())
    platform.clear_cache()
    runtime_docker.reset()
    hosts._probes.clear()
    import os

    helper = Nex(url, Path(os.environ["MNO_HOME"]), docker_client, config)
    yield helper
    helper.cleanup()
    platform.clear_cache()
    runtime_docker.reset()
    hosts._probes.clear()


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
