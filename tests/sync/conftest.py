from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sync.api import Api, Server, connector_yaml


class World:
    """A tenant with two apps (crm, books), each served by a local API."""

    def __init__(self, url: str, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.url = url
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.servers: list[Server] = []

    def setup(self) -> None:
        from mno.store.db import session_scope
        from mno.tenancy import apps, tenants

        with session_scope(self.url) as s:
            tenants.create(s, "acme")
            for code in ("crm", "books", "shop"):
                apps.create(s, code, code=code, stack="connector", owner="acme")

    def serve(self, api: Api) -> Server:
        server = Server(api).__enter__()
        self.servers.append(server)
        return server

    def connector(self, name: str, app: str, api: Api, **kw: Any) -> Server:
        from mno.store.db import session_scope
        from mno.sync import spec

        server = self.serve(api)
        path = self.tmp / f"{name}.yaml"
        path.write_text(connector_yaml(name, app, server.url, **kw))
        self.monkeypatch.setenv(f"MNO_SECRET_{name.upper().replace('-', '_')}_TOKEN", "t0ken")
        with session_scope(self.url) as s:
            spec.apply(s, spec.load_file(path), str(path))
        return server

    def connect(self, connector: str, **kw: Any) -> str:
        from mno.store.db import session_scope
        from mno.sync import connections

        with session_scope(self.url) as s:
            return connections.add(s, "acme", connector, **kw).name

    def run(self, name: str, **kw: Any) -> Any:
        from mno.sync import engine

        kw.setdefault("sleep", lambda _s: None)
        return engine.run(name, db_url=self.url, **kw)

    def records(self, deleted: bool = False) -> list[Any]:
        from sqlmodel import select

        from mno.store.db import session_scope
        from mno.store.models.sync import SyncRecord

        with session_scope(self.url, write=False) as s:
            rows = list(s.exec(select(SyncRecord)))
        return [r for r in rows if deleted or r.deleted_at is None]

    def audited(self, action: str, event: str) -> tuple[list[Any], list[Any]]:
        """The audit rows of ``action`` and the outbox events of type ``event``."""
        from sqlmodel import select

        from mno.store.db import session_scope
        from mno.store.models.core import AuditEntry, Event

        with session_scope(self.url, write=False) as s:
            audits = list(s.exec(select(AuditEntry).where(AuditEntry.action == action)))
            events = list(s.exec(select(Event).where(Event.type == event)))
        return audits, events

    def close(self) -> None:
        for server in self.servers:
            server.__exit__()


@pytest.fixture
def world(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    w = World(store_url, tmp_path, monkeypatch)
    w.setup()
    yield w
    w.close()
