"""The push queue and its delivery: every change queues a push to the tenant's other
connections that push the entity; delivery writes each to its app and keeps the pushed
hash on the id map, so the change coming back is recognised as an echo.

The REST client (and with it httpx) is imported when pushes are delivered, not with this
module, which every sync module and the daemons load."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock
from mno.errors import MnoError
from mno.store import leases
from mno.store.db import session_scope
from mno.store.models.sync import (
    SyncConnection,
    SyncConnector,
    SyncIdMap,
    SyncPush,
    SyncRecord,
)
from mno.store.types import table_of
from mno.sync import mapping
from mno.sync.runlock import LOCK_TTL, hold_connection, lock_name
from mno.sync.spec import ConnectorSpec

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.sync.rest import RestClient

PUSH_BATCH = 50


def row_stamp(now: datetime) -> dict[str, Any]:
    """A new row's id, created_at and updated_at, for bulk inserts of plain dicts."""
    return {"id": uuid.uuid4(), "created_at": now, "updated_at": now}


def queue_pushes(
    session: Session,
    targets: list[uuid.UUID],
    entity: str,
    record_ids: list[uuid.UUID],
    run_id: uuid.UUID | None,
) -> int:
    if not targets or not record_ids:
        return 0
    now = clock.now()
    rows = [
        {
            **row_stamp(now),
            "connection_id": t,
            "record_id": rid,
            "entity": entity,
            "run_id": run_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for t in targets
        for rid in record_ids
    ]
    session.connection().execute(table_of(SyncPush).insert(), rows)
    return len(rows)


def push_targets(session: Session, connection: SyncConnection, entity: str) -> list[uuid.UUID]:
    """The tenant's other connections that push this entity."""
    out = []
    rows = session.exec(
        select(SyncConnection, SyncConnector)
        .where(SyncConnection.tenant_id == connection.tenant_id)
        .where(SyncConnection.id != connection.id)
        .where(SyncConnection.push_enabled == True)  # noqa: E712
        .where(SyncConnection.connector_id == SyncConnector.id)
    ).all()
    for conn_row, connector in rows:
        if entity not in conn_row.entities:
            continue
        spec = ConnectorSpec.model_validate(connector.spec)
        if any(e.canonical == entity and e.push for e in spec.entities):
            out.append(conn_row.id)
    return out


def ignored_fields(session: Session, tenant_id: uuid.UUID, entity: str) -> list[str]:
    """The volatile fields the tenant's connectors leave out of this entity's hash."""
    out: set[str] = set()
    rows = session.exec(
        select(SyncConnector.spec)
        .where(SyncConnection.tenant_id == tenant_id)
        .where(SyncConnection.connector_id == SyncConnector.id)
    ).all()
    for spec in rows:
        for e in spec.get("entities", []):
            if e.get("canonical") == entity:
                out.update(e.get("ignore_fields") or [])
    return sorted(out)


def deliver(
    connection_id: uuid.UUID,
    owner: str,
    *,
    client: RestClient | None = None,
    db_url: str | None = None,
    renew: bool = False,
    limit: int = 10_000,
) -> tuple[int, int]:
    """Deliver queued pushes for one connection (caller holds its run lock).

    Returns (pushed, failed). Each write is followed by its id-map update (pushed hash,
    time) so the change is not pulled back as new (echo suppression)."""
    from mno.sync.rest import RestClient  # lazy: httpx (see the module docstring)

    pushed = failed = 0
    own_client = client is None
    with session_scope(db_url) as session:
        conn = session.get(SyncConnection, connection_id)
        assert conn is not None
        connector = session.get(SyncConnector, conn.connector_id)
        assert connector is not None
        spec = ConnectorSpec.model_validate(connector.spec)
    if client is None:
        client = RestClient(spec, conn.credentials, conn.base_url)
    try:
        while pushed + failed < limit:
            with session_scope(db_url) as session:
                ids = leases.claim(
                    session,
                    SyncPush,
                    owner,
                    PUSH_BATCH,
                    LOCK_TTL,
                    where=table_of(SyncPush).c.connection_id == connection_id,
                    order_by=[table_of(SyncPush).c.created_at],
                )
            if not ids:
                break
            for push_id in ids:
                try:
                    push_one(db_url, client, spec, conn, push_id, owner)
                    pushed += 1
                except MnoError as exc:
                    failed += 1
                    with session_scope(db_url) as session:
                        row = session.get(SyncPush, push_id)
                        attempts = row.attempts if row else 1
                        leases.retry(
                            session,
                            SyncPush,
                            push_id,
                            owner,
                            leases.backoff(attempts),
                            str(exc),
                            status="pending" if attempts < 8 else "failed",
                        )
    finally:
        if own_client:
            client.close()
    return pushed, failed


def _app_has(idmap: SyncIdMap, content_hash: str) -> bool:
    """Whether the app's latest known state (the later of our last pull and last push)
    already has this content."""
    pushed_later = idmap.last_pushed_at is not None and (
        idmap.last_pulled_at is None or idmap.last_pushed_at >= idmap.last_pulled_at
    )
    return (idmap.pushed_hash if pushed_later else idmap.pulled_hash) == content_hash


def push_one(
    db_url: str | None,
    client: RestClient,
    spec: ConnectorSpec,
    conn: SyncConnection,
    push_id: uuid.UUID,
    owner: str,
) -> None:
    with session_scope(db_url, write=False) as session:
        push = session.get(SyncPush, push_id)
        assert push is not None
        record = session.get(SyncRecord, push.record_id)
        idmap = session.exec(
            select(SyncIdMap).where(
                SyncIdMap.connection_id == conn.id,
                SyncIdMap.entity == push.entity,
                SyncIdMap.record_id == push.record_id,
            )
        ).first()
    ent = spec.entity(push.entity)
    external_id = idmap.external_id if idmap else None
    if record is not None and record.deleted_at is not None:
        if idmap is not None and ent.push and ent.push.delete and idmap.pushed_hash != "deleted":
            op = ent.push.delete
            client.request(op.method, op.path.format(id=external_id))
            with session_scope(db_url) as session:
                session.execute(
                    sa.update(SyncIdMap)
                    .where(col(SyncIdMap.id) == idmap.id)
                    .values(pushed_hash="deleted", last_pushed_at=clock.now())
                )
                leases.complete(session, SyncPush, [push_id], owner)
            return
        record = None  # nothing to write: never created there, or no delete operation
    if record is None or ent.push is None or (idmap and _app_has(idmap, record.content_hash)):
        with session_scope(db_url) as session:
            leases.complete(session, SyncPush, [push_id], owner, status="skipped")
        return
    body = mapping.push_body(ent, record.data)
    if idmap is None:
        if ent.push.create is None:
            raise MnoError(f"connector {spec.name} cannot create {push.entity}")
        op = ent.push.create
        response = client.request(op.method, op.path.format(id=""), body=body)
        answer = response.json() if response.content else {}
        external_id = str(mapping.get_path(answer, ent.push.id) or mapping.get_path(answer, ent.id))
    else:
        if ent.push.update is None:
            raise MnoError(f"connector {spec.name} cannot update {push.entity}")
        op = ent.push.update
        client.request(op.method, op.path.format(id=external_id), body=body)
    now = clock.now()
    with session_scope(db_url) as session:
        if idmap is None:
            hold_connection(session.connection(), conn)
            session.add(
                SyncIdMap(
                    connection_id=conn.id,
                    entity=push.entity,
                    external_id=str(external_id),
                    record_id=record.id,
                    pushed_hash=record.content_hash,
                    last_pushed_at=now,
                )
            )
        else:
            session.execute(
                sa.update(SyncIdMap)
                .where(col(SyncIdMap.id) == idmap.id)
                .values(pushed_hash=record.content_hash, last_pushed_at=now)
            )
        leases.complete(session, SyncPush, [push_id], owner)


def pending_targets(
    tenant_id: uuid.UUID, *, exclude: uuid.UUID | None = None, db_url: str | None = None
) -> list[uuid.UUID]:
    """The tenant's unpaused connections with pending pushes, but ``exclude``."""
    with session_scope(db_url, write=False) as session:
        ids = list(
            session.exec(
                select(SyncPush.connection_id)
                .distinct()
                .where(SyncPush.status == "pending")
                .where(SyncPush.connection_id == SyncConnection.id)
                .where(SyncConnection.tenant_id == tenant_id, SyncConnection.paused == False)  # noqa: E712
            )
        )
    return [i for i in ids if i != exclude]


def deliver_tenant(
    tenant_id: uuid.UUID, owner: str, *, exclude: uuid.UUID | None = None, db_url: str | None = None
) -> int:
    """Deliver pending pushes to the tenant's connections whose run lock is free."""
    return sum(
        deliver_locked(cid, owner, db_url=db_url)
        for cid in pending_targets(tenant_id, exclude=exclude, db_url=db_url)
    )


def deliver_locked(connection_id: uuid.UUID, owner: str, *, db_url: str | None = None) -> int:
    with session_scope(db_url) as session:
        if not leases.take_lock(session, lock_name(connection_id), owner, LOCK_TTL):
            return 0
    try:
        return deliver(connection_id, owner, db_url=db_url)[0]
    finally:
        with session_scope(db_url) as session:
            leases.release_lock(session, lock_name(connection_id), owner)
