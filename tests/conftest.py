"""Shared fixtures: a pinned environment, SQLite and PostgreSQL stores, and a CLI runner.

Every test gets its own ``MNO_HOME``, ``NO_COLOR`` and ``COLUMNS``, a file keyring in a
temporary directory, and no ``MNO_*`` variables from the outer environment.

The PostgreSQL server comes from ``MNO_TEST_PG_URL`` (``scripts/test`` exports it; the
default is the local server as ``postgres``). Each session creates its own database,
upgrades it once and drops it at the end; each test starts from empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

PG_SERVER_URL = os.environ.get(
    "MNO_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(autouse=True)
def mno_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from mno import clock, settings
    from mno.cli import output

    for name in list(os.environ):
        if name.startswith("MNO_") and name != "MNO_TEST_PG_URL":
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MNO_HOME", str(home))
    monkeypatch.setenv("MNO_ACTOR", "tester")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings.configure()
    output.reset()
    clock.set_now(None)
    _reset_keyring()
    yield home
    clock.set_now(None)
    settings.configure()


def _reset_keyring() -> None:
    """Pick the keyring backend again from PYTHON_KEYRING_BACKEND (keyring caches it)."""
    import keyring.core

    keyring.core.set_keyring(keyring.core.load_env() or keyring.core._detect_backend())


# -- PostgreSQL -------------------------------------------------------------------------


def _admin_engine() -> Any:
    from sqlalchemy import create_engine

    return create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, upgraded to the heads."""
    from sqlalchemy.engine import make_url

    name = f"mno_test_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # pragma: no cover - reported, never silently skipped in CI
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER_URL}: {exc}")
    url = make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    from mno.store import db

    db.upgrade(db.get_engine(url))
    try:
        yield url
    finally:
        db.dispose_all()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def truncate_all(url: str) -> None:
    from sqlmodel import SQLModel

    from mno.store.models import load_all

    load_all()
    from mno.store import db

    engine = db.get_engine(url)
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
def pg_url(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty PostgreSQL store, selected through MNO_DB_URL."""
    truncate_all(pg_database)
    monkeypatch.setenv("MNO_DB_URL", pg_database)
    yield pg_database


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty SQLite store file, selected through MNO_DB_URL."""
    from mno.store import db

    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("MNO_DB_URL", url)
    yield url
    engine = db._engines.pop(db.normalize_url(url), None)
    if engine is not None:
        engine.dispose()
    db._checked.discard(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store-level test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def session(store_url: str) -> Callable[..., AbstractContextManager[Any]]:
    """``with session() as s:`` opens one transaction on the test's store."""
    from mno.store.db import session_scope

    def opener(write: bool = True) -> AbstractContextManager[Any]:
        return session_scope(store_url, write=write)

    return opener


# -- SMTP -------------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    """A real SMTP server (aiosmtpd) on loopback; yields (port, received messages)."""
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    received: list[Any] = []

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            received.append(message)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Collect(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


# -- CLI --------------------------------------------------------------------------------


class Cli:
    """Runs ``mno`` in-process with typer's CliRunner."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        from mno.cli import app

        return self.runner.invoke(app, [str(a) for a in args], input=input)

    def json(self, *args: str, input: str | None = None) -> Any:
        import json

        result = self(*args, "-o", "json", input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def counts(url: str) -> tuple[int, int]:
    """(audit rows, outbox events): a store-unchanged check compares these."""
    import sqlalchemy as sa

    from mno.store import db

    with db.get_engine(url).connect() as conn:
        audit = conn.execute(sa.text("SELECT count(*) FROM audit_entry")).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM outbox_event")).scalar_one()
    return int(audit), int(events)
