"""Hub API fixtures: two tenants with members, a platform operator, tokens, the server."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.access.conftest import api, api_profile  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store migrated once; each test starts from a copy (migrating an empty
    file for every test costs seconds)."""
    from mno.store import db

    path = tmp_path_factory.mktemp("template") / "store.db"
    url = f"sqlite:///{path}"
    with db.session_scope(url):
        pass
    engine = db._engines.pop(db.normalize_url(url), None)
    if engine is not None:
        engine.dispose()
    db._checked.discard(url)
    return path


@pytest.fixture
def sqlite_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path
) -> Iterator[str]:
    """An empty SQLite store file (a copy of the migrated template), via MNO_DB_URL."""
    from mno.store import db

    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("MNO_DB_URL", url)
    yield url
    engine = db._engines.pop(db.normalize_url(url), None)
    if engine is not None:
        engine.dispose()
    db._checked.discard(url)


@pytest.fixture(params=["sqlite"])
def store_url(request: pytest.FixtureRequest) -> str:
    """SQLite for the HTTP behaviour; tests of store-level behaviour (concurrency, locks,
    paging, visibility queries) ask for PostgreSQL too with ``both_stores``."""
    name = "pg_url" if request.param == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(name))


both_stores = pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def world(session: Callable[..., AbstractContextManager[Any]]) -> dict[str, str]:
    """acme (owner@ super_admin, admin@ admin, bob@ member), globex (carol@ super_admin),
    and op@platform.io, super_admin of the system tenant: a token for each."""
    from mno.access import members, tokens
    from mno.tenancy import tenants

    with session() as s:
        tenants.ensure_system(s)
        tenants.create(s, "acme", name="Acme", status="active")
        tenants.create(s, "globex", name="Globex", status="active")
        members.add(s, "acme", "owner@acme.io", "super_admin")
        members.add(s, "acme", "admin@acme.io", "admin")
        members.add(s, "acme", "bob@acme.io", "member")
        members.add(s, "globex", "carol@globex.io", "super_admin")
        members.add(s, "system", "op@platform.io", "super_admin")
    out = {}
    with session() as s:  # one transaction for every token
        for who, email in (
            ("owner", "owner@acme.io"),
            ("admin", "admin@acme.io"),
            ("bob", "bob@acme.io"),
            ("carol", "carol@globex.io"),
            ("op", "op@platform.io"),
        ):
            out[who] = tokens.create(s, email, ttl="1h").secret
    return out


@pytest.fixture
def token(session: Callable[..., AbstractContextManager[Any]]) -> Callable[..., str]:
    """A fresh token of ``email`` with ``scopes`` (None: the default)."""
    from mno.access import tokens

    def make(email: str, *scopes: str) -> str:
        with session() as s:
            return tokens.create(s, email, ttl="1h", scopes=list(scopes) or None).secret

    return make


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class Hub:
    """An httpx client bound to the server, acting with one token at a time."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=30)

    def as_(self, secret: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=bearer(secret), timeout=30)


@pytest.fixture
def hub(api: str) -> Hub:  # noqa: F811
    return Hub(api)
