"""Backups of the store itself: ``mno db backup`` and ``mno db restore``.

SQLite is copied with its online backup API (``sqlite3.Connection.backup``): the copy is
a consistent snapshot of one moment even while agents write, because in WAL mode the
backup reads one snapshot and writers go on. The copy is written beside the target and
renamed into place, so a crash never leaves half a backup under the target's name.

PostgreSQL is dumped with ``pg_dump --format=custom`` (one consistent snapshot as well)
and restored with ``pg_restore --clean --if-exists --single-transaction``; both are the
PostgreSQL client's own tools, which know every type and object the store holds. Without
them the commands stop with a hint to install the client.

A restore reads the schema revisions inside the file first and refuses a file written by
a newer mno (revisions this code does not know), checks an SQLite file's integrity, and
keeps the SQLite store it replaces beside it (``<store>.before-restore-<time>``). A file
from an older mno is restored and then upgraded. Each backup and restore writes its audit
row and event (``store.backed_up`` / ``store.restored``) into the store; ``last_backup()``
reads the newest one for ``mno doctor``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mno import clock
from mno.errors import BadInput, MnoError, Unavailable

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

BACKED_UP = "store.backed_up"
RESTORED = "store.restored"
_PG_HINT = "install the PostgreSQL client tools (apt install postgresql-client)"


@dataclass(frozen=True)
class BackupResult:
    path: str
    format: str  # "sqlite" or "pg_dump"
    bytes: int
    revisions: list[str]
    taken_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "bytes": self.bytes,
            "revisions": self.revisions,
            "taken_at": self.taken_at,
        }


@dataclass(frozen=True)
class RestoreResult:
    source: str
    format: str
    revisions: list[str]
    upgraded: bool
    kept: str | None = None  # the SQLite store that was replaced, kept beside it
    restored_at: datetime = field(default_factory=clock.now)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "revisions": self.revisions,
            "upgraded": self.upgraded,
            "kept": self.kept,
            "restored_at": self.restored_at,
        }


def _sqlite_path(engine: Engine) -> Path:
    path = engine.url.database
    if not path or path == ":memory:":
        raise BadInput("an in-memory store cannot be backed up or restored")
    return Path(path)


def _libpq_url(engine: Engine) -> str:
    """The store's URL as libpq tools take it (no driver suffix, password kept)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise Unavailable(
            f"{name} is not installed: PostgreSQL stores are backed up with it", _PG_HINT
        )
    return found


def _run(args: list[str], what: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise MnoError(f"{what} failed: {reason}")
    return proc.stdout


def _record(url: str | None, action: str, target: str, data: dict[str, Any]) -> None:
    from mno.store import audit, outbox
    from mno.store.db import session_scope

    with session_scope(url) as s:
        audit.record(s, action, target_type="store", target_id="store", target=target, after=data)
        outbox.emit(s, action, data)


# -- backup -------------------------------------------------------------------------------


def backup(out: Path, url: str | None = None) -> BackupResult:
    """Write a consistent copy of the store to ``out`` (replaced if it exists)."""
    from mno.store import db

    engine = db.get_engine(url)
    db.check_schema(engine)
    out = out.expanduser()
    if out.is_dir():
        raise BadInput(f"{out} is a directory", "give a file name, e.g. mno-backup.db")
    if not out.parent.is_dir():
        raise BadInput(f"no directory {out.parent}", "create it first")
    revisions = sorted(db.store_revisions(engine) or set())
    tmp = out.with_name(f".{out.name}.partial")
    if db.is_sqlite(engine):
        source = _sqlite_path(engine)
        if source.resolve() == out.resolve():
            raise BadInput("the backup file is the store itself", "write it elsewhere")
        tmp.unlink(missing_ok=True)
        src = sqlite3.connect(source, timeout=60)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        fmt = "sqlite"
    else:
        _run(
            [_tool("pg_dump"), "--format=custom", f"--file={tmp}", _libpq_url(engine)],
            "pg_dump",
        )
        fmt = "pg_dump"
    os.replace(tmp, out)
    result = BackupResult(str(out), fmt, out.stat().st_size, revisions, clock.now())
    _record(url, BACKED_UP, str(out), {"path": str(out), "format": fmt, "bytes": result.bytes})
    return result


def last_backup(engine: Engine) -> datetime | None:
    """When the newest backup of this store was taken (from its audit rows)."""
    from sqlmodel import Session, col, select

    from mno.store.models.core import AuditEntry

    with Session(engine) as s:
        stmt = (
            select(AuditEntry.at)
            .where(AuditEntry.action == BACKED_UP)
            .order_by(col(AuditEntry.at).desc())
            .limit(1)
        )
        at = s.exec(stmt).first()
    return at


# -- restore ------------------------------------------------------------------------------


def _sqlite_file_revisions(path: Path) -> list[str]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BadInput(f"{path} cannot be opened as an SQLite file: {exc}") from None
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()
        if not check or check[0] != "ok":
            raise BadInput(f"{path} is damaged: {check[0] if check else 'no answer'}")
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.DatabaseError as exc:
        raise BadInput(f"{path} is not an mno store backup: {exc}") from None
    finally:
        conn.close()
    return sorted(r[0] for r in rows)


def _pg_file_revisions(path: Path) -> list[str]:
    listing = subprocess.run(  # noqa: S603
        [_tool("pg_restore"), "--list", str(path)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise BadInput(f"{path} is not a pg_dump custom-format file")
    data = _run(
        [_tool("pg_restore"), "--data-only", "--table=alembic_version", "--file=-", str(path)],
        "reading the backup's schema version",
    )
    revisions: list[str] = []
    in_copy = False
    for line in data.splitlines():
        if line.startswith("COPY ") and "alembic_version" in line:
            in_copy = True
        elif in_copy and line == "\\.":
            in_copy = False
        elif in_copy and line:
            revisions.append(line.split("\t", 1)[0])
    if not revisions:
        raise BadInput(f"{path} holds no mno schema version: it is not an mno store backup")
    return sorted(revisions)


def _check_revisions(path: Path, revisions: list[str]) -> None:
    from mno.store import db

    unknown = set(revisions) - db.all_revisions()
    if unknown:
        raise BadInput(
            f"{path} was written by a newer mno (schema {', '.join(sorted(unknown))})",
            "restore it with that mno version or a newer one",
        )


def inspect(source: Path, url: str | None = None) -> tuple[str, list[str]]:
    """The backup's format and schema revisions, checked against this mno and the store."""
    from mno.store import db

    source = source.expanduser()
    if not source.is_file():
        raise BadInput(f"no file {source}")
    engine = db.get_engine(url)
    with source.open("rb") as fh:
        magic = fh.read(16)
    if magic.startswith(b"SQLite format 3"):
        fmt = "sqlite"
        if not db.is_sqlite(engine):
            raise BadInput(f"{source} is an SQLite backup; the store is PostgreSQL")
        revisions = _sqlite_file_revisions(source)
    elif magic.startswith(b"PGDMP"):
        fmt = "pg_dump"
        if db.is_sqlite(engine):
            raise BadInput(f"{source} is a PostgreSQL dump; the store is SQLite")
        revisions = _pg_file_revisions(source)
    else:
        raise BadInput(f"{source} is neither an SQLite backup nor a pg_dump file")
    _check_revisions(source, revisions)
    return fmt, revisions


def restore(source: Path, url: str | None = None) -> RestoreResult:
    """Replace the store's contents with the backup at ``source``."""
    from mno.store import db

    source = source.expanduser()
    fmt, revisions = inspect(source, url)
    engine = db.get_engine(url)
    kept: str | None = None
    if fmt == "sqlite":
        target = _sqlite_path(engine)
        if target.exists() and target.resolve() == source.resolve():
            raise BadInput("the backup file is the store itself")
        engine.dispose()
        if target.exists():
            stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
            keep = target.with_name(f"{target.name}.before-restore-{stamp}")
            live = sqlite3.connect(target)
            copy = sqlite3.connect(keep)
            try:
                live.backup(copy)
            finally:
                copy.close()
                live.close()
            kept = str(keep)
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(target, timeout=60)
        try:
            src.backup(dst)  # replaces every page of the store under its write lock
        finally:
            dst.close()
            src.close()
    else:
        engine.dispose()
        _run(
            [
                _tool("pg_restore"),
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                f"--dbname={_libpq_url(engine)}",
                str(source),
            ],
            "pg_restore",
        )
    db.forget_checked(engine)
    upgraded = set(revisions) != db.code_heads()
    if upgraded:
        db.upgrade(engine)
    result = RestoreResult(str(source), fmt, revisions, upgraded, kept)
    _record(url, RESTORED, str(source), {"source": str(source), "format": fmt, "kept": kept})
    return result
