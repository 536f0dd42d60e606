"""Engines and sessions for SQLite (WAL, foreign keys) or PostgreSQL (psycopg 3).

``session_scope()`` is the unit of work: one transaction, committed on success and rolled
back on any error. On SQLite a writing scope starts with ``BEGIN IMMEDIATE`` so that
writers queue on the lock instead of failing to upgrade a read transaction; a read-only
scope (``write=False``) starts a deferred transaction and never blocks on writers (WAL).
Writers of one process also queue on an in-process lock per store before ``BEGIN
IMMEDIATE``: SQLite's own busy handler polls with sleeps of up to 100 ms, so threads of an
agent that write often (the provisioner, the dispatcher) would otherwise wait far longer
than the lock is held. Other processes still queue on SQLite's lock.

The schema is checked once per engine: an empty SQLite store is created and upgraded on
first use; a store that is behind or ahead of the code is refused with a clear message.

SQLAlchemy, SQLModel and Alembic are imported inside the functions that use them: the CLI
imports this module for commands that may never open the store, and those start faster
without them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mno import settings
from mno.errors import BadInput, SchemaMismatch, Unavailable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_engines: dict[str, Engine] = {}
_checked: set[str] = set()
_writers: dict[str, threading.RLock] = {}
WRITER_WAIT_S = 60.0  # as long as SQLite's busy timeout


def normalize_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def redact(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def is_sqlite(url_or_engine: Any) -> bool:
    name: str | None = getattr(getattr(url_or_engine, "dialect", None), "name", None)
    if name:
        return name == "sqlite"
    return str(url_or_engine).startswith("sqlite")


# When set (in this thread or task), opening the store is refused with this message
# (exit 2): the CLI sets it for a command sent to a hub over HTTP (``--server``).
local_refused: ContextVar[str | None] = ContextVar("mno_local_refused", default=None)


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: the configured store)."""
    refused = local_refused.get()
    if refused is not None:
        raise BadInput(refused)
    url = normalize_url(url or settings.db_url())
    engine = _engines.get(url)
    if engine is None:
        from mno.store import limits

        limits.install()
        engine = _create_engine(url)
        _engines[url] = engine
    return engine


SQLITE_CACHE_KIB = 65536  # each SQLite connection's page cache, at most (64 MiB)


def _create_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, event

    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 60}, pool_size=8
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA temp_store=MEMORY")
            # SQLite's default page cache is 2 MiB: a bulk write (a billing chunk, a sync
            # page) touching index pages all over a large store would spill and read
            # them back again and again. Pages are only allocated as they are used.
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    if not url.startswith("postgresql"):
        raise BadInput(
            f"unsupported store URL {redact(url)}",
            "use sqlite:////path/to/mno.db or postgresql+psycopg://user@host/db",
        )
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _checked.clear()


# -- schema version -----------------------------------------------------------------

_REV = re.compile(r"^revision\s*(?::\s*str)?\s*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.M)


def code_heads() -> set[str]:
    """Head revisions of the shipped migrations, read without importing Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text()
        rev = _REV.search(text)
        if not rev:
            continue
        revisions.add(rev.group(1))
        down = _DOWN.search(text)
        if down:
            parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    return revisions - parents


def all_revisions() -> set[str]:
    revs = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        rev = _REV.search(path.read_text())
        if rev:
            revs.add(rev.group(1))
    return revs


def store_revisions(engine: Engine) -> set[str] | None:
    """The revisions recorded in the store; None when it has no version table."""
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}


def _is_empty(engine: Engine) -> bool:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        return not inspect(conn).get_table_names()


def check_schema(engine: Engine) -> None:
    """Create an empty SQLite store; refuse a store that is behind or ahead."""
    key = str(engine.url)
    if key in _checked:
        return
    try:
        current = store_revisions(engine)
        heads = code_heads()
        if current is None or not current:
            if is_sqlite(engine) and _is_empty(engine):
                upgrade(engine)
                _checked.add(key)
                return
            raise SchemaMismatch(
                f"the store at {redact(key)} has no mno schema", "run `mno db upgrade`"
            )
        unknown = current - all_revisions()
        if unknown:
            raise SchemaMismatch(
                f"the store's schema ({', '.join(sorted(unknown))}) is ahead of this mno",
                "upgrade mno",
            )
        if current != heads:
            raise SchemaMismatch(
                f"the store's schema is behind this mno ({', '.join(sorted(current))})",
                "run `mno db upgrade`",
            )
    except SchemaMismatch:
        raise
    except Exception as exc:  # re-raised, as Unavailable when the store cannot be reached
        _raise_unavailable(exc, key)
        raise
    _checked.add(key)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", str(engine.url).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine | None = None, target: str = "heads") -> None:
    """Upgrade the store to ``target`` (all heads by default)."""
    from alembic import command

    engine = engine or get_engine()
    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
    _checked.discard(str(engine.url))


def forget_checked(engine: Engine) -> None:
    """Check the store's schema again on next use (after its contents were replaced)."""
    _checked.discard(str(engine.url))


_UNREACHABLE = (
    "could not connect",
    "connection refused",
    "connection to server",
    "server closed the connection",
    "unable to open database",
    "database is locked",
    "no route to host",
    "name or service not known",
    "timeout expired",
    "terminating connection",
)


def _raise_unavailable(exc: Exception, url: str) -> None:
    """Turn a failure to reach the store into Unavailable (exit 3); leave others alone."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        if exc.connection_invalidated or any(p in detail.lower() for p in _UNREACHABLE):
            raise Unavailable(f"cannot reach the store at {redact(url)}: {detail}") from exc


def _writer_lock(engine: Engine) -> threading.RLock:
    key = str(engine.url)
    lock = _writers.get(key)
    if lock is None:
        lock = _writers.setdefault(key, threading.RLock())
    return lock


def pin(session: Session, *rows: Any) -> None:
    """Keep ``rows`` referenced until the transaction ends. The session's identity map
    holds rows weakly: a row read in a join and then dropped is read again by the next
    ``session.get``; pinned, that ``get`` is answered from memory."""
    session.info.setdefault("mno_pinned", []).extend(rows)


@contextmanager
def session_scope(url: str | None = None, *, write: bool = True) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    from sqlmodel import Session

    engine = get_engine(url)
    check_schema(engine)
    lock = _writer_lock(engine) if write and is_sqlite(engine) else None
    if lock is not None and not lock.acquire(timeout=WRITER_WAIT_S):
        raise Unavailable(
            f"cannot reach the store at {redact(str(engine.url))}: database is locked",
            "another writer held it too long",
        )
    try:
        with Session(engine, expire_on_commit=False) as session:
            if lock is not None:
                session.connection(execution_options={"sqlite_immediate": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    except Exception as exc:  # re-raised, as Unavailable when the store cannot be reached
        _raise_unavailable(exc, str(engine.url))
        raise
    finally:
        if lock is not None:
            lock.release()
