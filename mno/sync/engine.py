"""The sync engine: runs of a connection (pull each entity, then deliver its pushes),
recovery mode and scheduling. The parts live in ``pull`` (the pass: fetch, map, diff,
write, checkpoint), ``pages`` (one page: map, detect changes, write), ``page_writer``
(how pages reach the database fast), ``push`` (the push queue), ``runlock`` and
``views`` (what the CLI shows).

Guarantees:

- A page's canonical records, id maps, change rows (the per-record audit trail), outbox
  events, queued pushes and the cursor checkpoint commit in ONE transaction; a crash
  resumes from the last committed page (at least once; hashes make replays no-ops).
- A full sync sweeps deletions only after the last page was committed, using a token
  stamped on every id map it saw; an interrupted full sync deletes nothing.
- Runs of one connection never overlap: a named lock ``sync:<connection id>`` is taken
  at start and renewed in every page transaction; losing it aborts the run. A lock whose
  holder died on this host is taken over at once (``leases.take_lock``).
- After 3 consecutive failed runs a connection is in recovery mode for 24 h (Maestrano)
  and is skipped unless forced.

The REST client (and with it httpx) is imported when a run starts, not with this module,
which the daemons and the API load at start-up.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select

from mno import clock
from mno.errors import Conflict, MnoError, Unavailable
from mno.store import audit, leases
from mno.store.db import session_scope
from mno.store.models.sync import (
    SyncChange,
    SyncConnection,
    SyncConnector,
    SyncRecord,
    SyncRun,
)
from mno.sync import connections
from mno.sync.page_writer import checkpoint_wal
from mno.sync.pages import Ctx, connec_app, fetch_page, map_page
from mno.sync.pull import ProgressFn, pull_entity
from mno.sync.push import (
    deliver,
    deliver_locked,
    deliver_tenant,
    ignored_fields,
    pending_targets,
    push_targets,
    queue_pushes,
)
from mno.sync.runlock import LOCK_TTL, hold_connection, lock_name
from mno.sync.spec import ConnectorSpec

if TYPE_CHECKING:
    from sqlmodel import Session


RECOVERY_FAILURES = 3
RECOVERY_FOR = timedelta(hours=24)
CHECKPOINT_AFTER_PAGES = 20  # SQLite: checkpoint the WAL after a run that wrote this many


def in_recovery(connection: SyncConnection) -> datetime | None:
    """When recovery mode ends, or None when the connection is not in it."""
    if connection.consecutive_failures < RECOVERY_FAILURES or connection.last_failure_at is None:
        return None
    until = connection.last_failure_at + RECOVERY_FOR
    return until if until > clock.now() else None


def start_run(
    session: Session,
    connection: SyncConnection,
    owner: str,
    *,
    entity: str | None,
    full: bool,
    force: bool,
) -> SyncRun:
    if connection.paused and not force:
        raise Conflict(f"connection {connection.name} is paused", "resume it or use --force")
    until = in_recovery(connection)
    if until and not force:
        raise Conflict(
            f"connection {connection.name} is in recovery mode after "
            f"{connection.consecutive_failures} failed runs until {until.isoformat()}",
            "use --force",
        )
    # a lock left by a run whose process died on this host (kill -9) is taken over at
    # once; one held elsewhere is waited out until it expires
    if not leases.take_lock(session, lock_name(connection.id), owner, LOCK_TTL):
        holder = leases.lock_holder(session, lock_name(connection.id))
        raise Conflict(
            f"connection {connection.name} is already syncing",
            f"held by {holder[0] if holder else '?'}",
        )
    # a run left "running" by a crashed process is closed; its checkpoint stays
    session.execute(
        sa.update(SyncRun)
        .where(col(SyncRun.connection_id) == connection.id, col(SyncRun.status) == "running")
        .values(status="error", error="interrupted", finished_at=clock.now())
    )
    run = SyncRun(connection_id=connection.id, entity=entity, full=full, forced=force, owner=owner)
    session.add(run)
    session.flush()
    return run


def _counting(
    inner: ProgressFn | None, on_progress: Callable[[int, int | None], None]
) -> ProgressFn:
    """A per-page ``progress`` that also reports the running count to ``on_progress``."""
    done = 0

    def page(entity: str, n: int) -> None:
        nonlocal done
        done += n
        if inner is not None:
            inner(entity, n)
        on_progress(done, None)

    return page


def run(
    connection_name: str | uuid.UUID,
    *,
    entity: str | None = None,
    full: bool = False,
    force: bool = False,
    owner: str | None = None,
    db_url: str | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] | None = None,
    propagate: bool = True,
    raise_fatal: bool = False,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> SyncRun:
    """One foreground run of one connection: pull each entity, then push what is queued.
    ``progress(entity, n)`` hears of each page of ``n`` records; ``on_progress(done,
    None)`` of the records pulled so far (the total is not known ahead).

    An API that cannot be reached (``Unavailable``) or that refuses the credentials
    (``AuthFailed``) ends the run at once, since every entity would fail the same way;
    the run is recorded as failed, and with ``raise_fatal`` that error is raised after
    it (the CLI exits 3 or 1 with the connector's auth hint)."""
    from mno.sync.rest import AuthFailed, RestClient  # lazy: httpx (module docstring)

    owner = owner or leases.make_owner()
    if on_progress is not None:
        progress = _counting(progress, on_progress)

    def scope() -> Any:
        return session_scope(db_url)

    with scope() as session:
        conn = connections.get(session, connection_name)
        connector = session.get(SyncConnector, conn.connector_id)
        assert connector is not None
        spec = ConnectorSpec.model_validate(connector.spec)
        app_id = connector.app_id
        names = [entity] if entity else list(conn.entities)
        for name in names:
            spec.entity(name)
        # child streams after their parents: a child is listed per parent pulled
        names.sort(key=lambda n: spec.entity(n).parent is not None)
        sync_run = start_run(session, conn, owner, entity=entity, full=full, force=force)
        run_id = sync_run.id
    counts: dict[str, int] = {}
    errors: list[str] = []
    ok = 0
    fatal: MnoError | None = None
    try:
        client_kwargs: dict[str, Any] = {"owner": conn.name}
        if sleep:
            client_kwargs["sleep"] = sleep
        with RestClient(spec, conn.credentials, conn.base_url, **client_kwargs) as client:
            try:
                listed: dict[str, set[str]] = {}
                for name in names if conn.pull_enabled else []:
                    ent = spec.entity(name)
                    ctx = Ctx(run_id, conn, spec, ent, owner, source=conn.name)
                    ctx.connec_app = connec_app(app_id, ent.canonical)
                    ctx.listed = listed
                    try:
                        pull_entity(scope, client, ctx, full=full, progress=progress)
                        ok += 1
                    except (Conflict, Unavailable, AuthFailed):
                        raise
                    except MnoError as exc:
                        errors.append(f"{name}: {exc}")
                    finally:
                        for k, v in ctx.counts.items():
                            counts[k] = counts.get(k, 0) + v
                # push after pulling, so a change made in this app since the last run
                # is seen (and resolved as a conflict) before it could be overwritten
                if conn.push_enabled and not errors:
                    pushed = deliver(conn.id, owner, client=client, db_url=db_url)
                    counts["pushed"] = pushed[0]
                    counts["push_failed"] = pushed[1]
            finally:
                counts["requests"] = client.requests
    except Exception as exc:
        # any failure ends the run: recorded on the run row (status, error) below and
        # reported to the caller through it
        errors.append(str(exc) or type(exc).__name__)
        if isinstance(exc, Unavailable | AuthFailed):
            fatal = exc
    status = "success" if not errors else ("partial" if ok else "error")
    if counts.get("pages", 0) >= CHECKPOINT_AFTER_PAGES:
        checkpoint_wal(db_url)
    with scope() as session:
        finished = finish_run(session, run_id, conn.id, owner, status, counts, errors)
    if fatal is not None and raise_fatal:
        raise fatal
    # propagate: the tenant's other connections with queued pushes run now (pull, then
    # push) when they are idle; those runs do not propagate further
    if propagate and status != "error":
        for other in pending_targets(conn.tenant_id, exclude=conn.id, db_url=db_url):
            try:
                run(other, owner=leases.make_owner(), db_url=db_url, sleep=sleep, propagate=False)
            except MnoError:
                pass  # busy, paused or in recovery: its own next run delivers
    return finished


def finish_run(
    session: Session,
    run_id: uuid.UUID,
    connection_id: uuid.UUID,
    owner: str,
    status: str,
    counts: dict[str, int],
    errors: list[str],
) -> SyncRun:
    run_row = session.get(SyncRun, run_id)
    assert run_row is not None  # runs outlive their connection (see connections.remove)
    # the connection is gone if it was removed during the run: the run is still recorded
    conn = session.get(SyncConnection, connection_id)
    now = clock.now()
    run_row.status, run_row.counts, run_row.finished_at = status, counts, now
    run_row.error = "; ".join(errors)[:4000] or None
    session.add(run_row)
    if conn is not None:
        if status == "error":
            conn.consecutive_failures += 1
            conn.last_failure_at = now
        else:
            conn.consecutive_failures = 0
        conn.last_run_at = now
        session.add(conn)
    leases.release_lock(session, lock_name(connection_id), owner)
    audit.record(
        session,
        "sync.run",
        target_type="sync_run",
        target_id=run_id,
        target=conn.name if conn is not None else str(connection_id),
        after={"status": status, **counts},
        tenant_id=conn.tenant_id if conn is not None else None,
    )
    return run_row


def due_connections(session: Session, limit: int = 10) -> list[uuid.UUID]:
    now = clock.now()
    next_run_at = col(SyncConnection.next_run_at)
    rows = session.exec(
        select(SyncConnection.id)
        .where(SyncConnection.paused == False)  # noqa: E712
        .where(sa.or_(next_run_at.is_(None), next_run_at <= now))
        .order_by(next_run_at)
        .limit(limit)
    ).all()
    return list(rows)


def schedule_next(
    session: Session, connection_id: uuid.UUID, interval: timedelta, jitter: float = 0.1
) -> None:
    """Next run after ``interval`` plus up to ``jitter`` × interval, so runs spread out."""
    nxt = clock.now() + interval * (1 + random.uniform(0, jitter))
    session.execute(
        sa.update(SyncConnection)
        .where(col(SyncConnection.id) == connection_id)
        .values(next_run_at=nxt)
    )


def iter_changes(session: Session, record_id: uuid.UUID) -> Iterator[SyncChange]:
    """A record's changes in order. A pulled create's compact change row (``after``
    NULL) gets its after-state back: the next change's before-state, or the record's
    data when nothing changed it since."""
    rows = list(
        session.exec(
            select(SyncChange)
            .where(SyncChange.record_id == record_id)
            .order_by(col(SyncChange.seq))
        )
    )
    for i, row in enumerate(rows):
        if row.action == "create" and row.after is None:
            if i + 1 < len(rows):
                after = rows[i + 1].before
            else:
                record = session.get(SyncRecord, record_id)
                after = record.data if record is not None and record.deleted_at is None else None
            set_committed_value(row, "after", after)
    yield from rows


__all__ = [
    "CHECKPOINT_AFTER_PAGES",
    "LOCK_TTL",
    "RECOVERY_FAILURES",
    "RECOVERY_FOR",
    "Ctx",
    "ProgressFn",
    "deliver",
    "deliver_locked",
    "deliver_tenant",
    "due_connections",
    "fetch_page",
    "finish_run",
    "hold_connection",
    "ignored_fields",
    "in_recovery",
    "iter_changes",
    "lock_name",
    "map_page",
    "pending_targets",
    "pull_entity",
    "push_targets",
    "queue_pushes",
    "run",
    "schedule_next",
    "start_run",
]
