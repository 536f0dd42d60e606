"""Connections: a tenant's use of a connector, with entities, directions, preemption and
per-tenant credentials held by reference (``secret:NAME``), never by value."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock, secrets
from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, lookup, outbox, paging
from mno.store.models.sync import (
    SyncConflict,
    SyncConnection,
    SyncConnector,
    SyncCursor,
    SyncIdMap,
    SyncPush,
    SyncRecordError,
    SyncRun,
)
from mno.store.models.tenancy import Tenant
from mno.sync import spec as specmod
from mno.tenancy import apps, tenants

if TYPE_CHECKING:
    from sqlmodel import Session

PREEMPTIONS = ("platform", "app")
FIRST_RUN_SPREAD = timedelta(hours=1)


def get_connector(session: Session, name: str) -> SyncConnector:
    row = session.exec(select(SyncConnector).where(SyncConnector.name == name)).first()
    if row is None:
        raise NotFound(f"connector {name} not found", "see `mno connector list`")
    return row


def get(session: Session, name_or_id: str | uuid.UUID) -> SyncConnection:
    row = None
    if isinstance(name_or_id, uuid.UUID):
        row = session.get(SyncConnection, name_or_id)
    else:
        row = session.exec(select(SyncConnection).where(SyncConnection.name == name_or_id)).first()
        if row is None:
            row = lookup.find(session, SyncConnection, name_or_id, "connection")
    if row is None:
        raise NotFound(f"connection {name_or_id} not found", "see `mno connection list`")
    return row


def add(
    session: Session,
    tenant_key: str,
    connector_name: str,
    *,
    entities: list[str] | None = None,
    push: bool = True,
    pull: bool = True,
    preemption: str | None = None,
    credentials: dict[str, str] | None = None,
    base_url: str | None = None,
) -> SyncConnection:
    tenant = tenants.get(session, tenant_key)
    connector = get_connector(session, connector_name)
    spec = specmod.of(connector)
    known = [e.canonical for e in spec.entities]
    chosen = entities or known
    for name in chosen:
        if name not in known:
            raise BadInput(f"connector {connector_name} has no entity {name!r}", ", ".join(known))
    if preemption is not None and preemption not in PREEMPTIONS:
        raise BadInput(f"invalid preemption {preemption!r}", "platform or app")
    for key, value in (credentials or {}).items():
        if not secrets.is_ref(value):
            raise BadInput(f"credential {key} must be a secret reference like secret:NAME")
    if not push and not pull:
        raise BadInput("a connection needs push or pull", "drop --no-push or --no-pull")
    app = apps.get(session, connector.app_id)
    ok, reason = apps.check_access(session, app, tenant)
    if not ok:
        raise Conflict(f"tenant {tenant.key} may not use app {app.code}: {reason}")
    name = f"{tenant.key}/{connector.name}"
    if session.exec(select(SyncConnection).where(SyncConnection.name == name)).first():
        raise Conflict(f"connection {name} already exists")
    row = SyncConnection(
        name=name,
        tenant_id=tenant.id,
        connector_id=connector.id,
        entities=chosen,
        push_enabled=push,
        pull_enabled=pull,
        preemption=preemption,
        credentials=dict(credentials or {}),
        base_url=base_url,
        next_run_at=clock.now() + FIRST_RUN_SPREAD * random.random(),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "connection.create",
        target_type="connection",
        target_id=row.id,
        target=name,
        after=audit.jsonable(view(session, row)),
        tenant_id=tenant.id,
    )
    return row


def set_paused(session: Session, name: str, paused: bool) -> SyncConnection:
    row = get(session, name)
    if row.paused == paused:
        return row
    row.paused = paused
    if not paused:
        row.consecutive_failures = 0
    row.touch()
    session.add(row)
    audit.record(
        session,
        "connection.pause" if paused else "connection.resume",
        target_type="connection",
        target_id=row.id,
        target=row.name,
        before={"paused": not paused},
        after={"paused": paused},
        tenant_id=row.tenant_id,
    )
    return row


_KEEP: Any = object()


def update(
    session: Session,
    name: str,
    *,
    entities: list[str] | None = None,
    push: bool | None = None,
    pull: bool | None = None,
    preemption: str | None = _KEEP,
    credentials: dict[str, str] | None = None,
    base_url: str | None = _KEEP,
) -> SyncConnection:
    """Change a connection's entities, directions, preemption, credentials (replaced as a
    whole, by reference) or base URL; ``preemption=None``/``base_url=None`` clear them.

    Dropping an entity drops its cursor too, so adding it back later pulls it in full;
    its id maps stay, so records already linked are not created twice."""
    row = get(session, name)
    before = audit.jsonable(view(session, row)) | {"base_url": row.base_url}
    if entities is not None:
        connector = session.get(SyncConnector, row.connector_id)
        assert connector is not None  # a foreign key: the connector outlives its connections
        known = [e.canonical for e in specmod.of(connector).entities]
        for entity in entities:
            if entity not in known:
                raise BadInput(f"connection {name} has no entity {entity!r}", ", ".join(known))
        if not entities:
            raise BadInput("a connection needs at least one entity")
        dropped = sorted(set(row.entities) - set(entities))
        if dropped:
            session.execute(
                sa.delete(SyncCursor).where(
                    col(SyncCursor.connection_id) == row.id,
                    col(SyncCursor.entity).in_(dropped),
                )
            )
        row.entities = list(entities)
    if push is not None:
        row.push_enabled = push
    if pull is not None:
        row.pull_enabled = pull
    if not row.push_enabled and not row.pull_enabled:
        raise BadInput("a connection needs push or pull", "keep one of them on")
    if preemption is not _KEEP:
        if preemption is not None and preemption not in PREEMPTIONS:
            raise BadInput(f"invalid preemption {preemption!r}", "platform or app")
        row.preemption = preemption
    if credentials is not None:
        for key, value in credentials.items():
            if not secrets.is_ref(value):
                raise BadInput(f"credential {key} must be a secret reference like secret:NAME")
        row.credentials = dict(credentials)
    if base_url is not _KEEP:
        row.base_url = base_url or None
    after = audit.jsonable(view(session, row)) | {"base_url": row.base_url}
    if after == before:
        return row
    row.touch()
    session.add(row)
    audit.record(
        session,
        "connection.update",
        target_type="connection",
        target_id=row.id,
        target=row.name,
        before=before,
        after=after,
        tenant_id=row.tenant_id,
    )
    outbox.emit(
        session,
        "connection.updated",
        {"name": row.name, "changes": audit.diff(before, after)},
        row.tenant_id,
    )
    session.flush()
    return row


def remove(session: Session, name: str) -> None:
    row = get(session, name)
    # lock the row first: a sync page transaction holds it (``engine.hold_connection``)
    # until it commits, so the deletes below see every id map it wrote, and later pages
    # find the connection gone
    session.execute(
        sa.select(col(SyncConnection.id)).where(col(SyncConnection.id) == row.id).with_for_update()
    )
    before = audit.jsonable(view(session, row))
    for model in (SyncIdMap, SyncCursor, SyncPush, SyncConflict, SyncRecordError):
        session.execute(sa.delete(model).where(col(model.connection_id) == row.id))
    session.execute(
        sa.update(SyncRun).where(col(SyncRun.connection_id) == row.id).values(connection_id=None)
    )
    session.delete(row)
    audit.record(
        session,
        "connection.remove",
        target_type="connection",
        target_id=row.id,
        target=row.name,
        before=before,
        tenant_id=row.tenant_id,
    )


def view(session: Session, row: SyncConnection) -> dict[str, Any]:
    tenant = session.get(Tenant, row.tenant_id)
    connector = session.get(SyncConnector, row.connector_id)
    return {
        "id": str(row.id),
        "name": row.name,
        "tenant": tenant.key if tenant else None,
        "connector": connector.name if connector else None,
        "entities": list(row.entities),
        "pull": row.pull_enabled,
        "push": row.push_enabled,
        "preemption": row.preemption,
        "paused": row.paused,
        "credentials": dict(row.credentials),
        "consecutive_failures": row.consecutive_failures,
        "last_run_at": row.last_run_at,
        "next_run_at": row.next_run_at,
    }


def _connections(session: Session, tenant_key: str | None) -> Any:
    stmt = select(SyncConnection)
    if tenant_key:
        stmt = stmt.where(SyncConnection.tenant_id == tenants.get(session, tenant_key).id)
    return stmt


def page_connections(
    session: Session,
    tenant_key: str | None = None,
    *,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[dict[str, Any]]:
    """One page of connection views by name, after the cursor ``after`` (a name)."""
    order = [col(SyncConnection.name)]
    rows, nxt = paging.page(session, _connections(session, tenant_key), order, after, limit)
    return paging.Page([view(session, r) for r in rows], nxt)


def stream_connections(
    session: Session, tenant_key: str | None = None, *, after: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every connection view by name, read a chunk at a time."""
    order = [col(SyncConnection.name)]
    for r in paging.each(session, _connections(session, tenant_key), order, after):
        yield view(session, r)
