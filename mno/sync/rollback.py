"""Rollback of a sync run: restore the records it changed to their before-state.

The plan lists, per record, the state before the run's first change to it and its state
now. A record that a later run changed is a conflict: the plan shows, field by field,
what the run left and what the record holds now, and what ``--force`` would overwrite;
rollback refuses with that plan (``Refused``) unless forced.
Applying the plan writes new change rows (source ``rollback:<run>``) under a run of kind
``rollback``, emits record events and queues pushes of the restored state to every
connection of the tenant that pushes the entity, the source connection included.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock
from mno.errors import Conflict, NotFound
from mno.store import audit, outbox
from mno.store.db import session_scope
from mno.store.models.sync import SyncChange, SyncConnection, SyncRecord, SyncRun
from mno.store.types import table_of
from mno.sync import mapping
from mno.sync.push import deliver_tenant, ignored_fields, push_targets, queue_pushes

if TYPE_CHECKING:
    from sqlmodel import Session


@dataclass
class Plan:
    """What a rollback restores. ``items``: one per record the run changed (record_id,
    entity, restore ``restore|delete``, before, current, conflict). ``conflicts``: one
    per record a later run changed (record_id, entity, later_run, source, action,
    ``changes``: the fields that differ from what the run left, as {field, after_run,
    current}, and ``overwrites``: what ``--force`` would replace, as {field, current,
    restore}; a field ``(deleted)`` stands for the record's presence)."""

    run_id: uuid.UUID
    items: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    applied: bool = False
    forced: bool = False
    rollback_run_id: uuid.UUID | None = None

    @property
    def refused(self) -> bool:
        return bool(self.conflicts) and not self.forced

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "applied": self.applied,
            "forced": self.forced,
            "refused": self.refused,
            "rollback_run_id": str(self.rollback_run_id) if self.rollback_run_id else None,
            "records": self.items,
            "conflicts": self.conflicts,
        }


class Refused(Conflict):
    """A rollback refused because later runs changed some of its records; ``plan``
    shows which and what ``--force`` would overwrite."""

    def __init__(self, plan: Plan) -> None:
        conflicts = plan.conflicts
        listed = ", ".join(f"{x['entity']} {x['record_id']}" for x in conflicts[:20])
        more = len(conflicts) - 20
        super().__init__(
            f"later runs changed {len(conflicts)} of the records: {listed}"
            + (f" and {more} more" if more > 0 else ""),
            "use --force to restore them anyway",
        )
        self.plan = plan


def plan(session: Session, run_id: uuid.UUID) -> Plan:
    run = session.get(SyncRun, run_id)
    if run is None:
        raise NotFound(f"sync run {run_id} not found", "see `mno sync runs`")
    c = table_of(SyncChange)
    rows = (
        session.connection()
        .execute(
            sa.select(c.c.seq, c.c.record_id, c.c.entity, c.c.action, c.c.before, c.c.after)
            .where(c.c.run_id == run_id)
            .order_by(c.c.seq)
        )
        .all()
    )
    first: dict[uuid.UUID, Any] = {}
    last_seq: dict[uuid.UUID, int] = {}
    for row in rows:
        first.setdefault(row.record_id, row)
        last_seq[row.record_id] = row.seq
    result = Plan(run_id)
    if not first:
        return result
    later = (
        session.connection()
        .execute(
            sa.select(c.c.record_id, c.c.seq, c.c.run_id, c.c.source, c.c.action, c.c.before)
            .where(c.c.record_id.in_(list(first)), c.c.run_id != run_id)
            .where(c.c.seq > min(last_seq.values()))
            .order_by(c.c.seq)
        )
        .all()
    )
    # the first later change of each record: its before-state is what the run left
    after_run: dict[uuid.UUID, Any] = {}
    for change in later:
        if change.seq > last_seq[change.record_id] and change.record_id not in after_run:
            after_run[change.record_id] = change
    current = _current(session, list(first))
    ignored: dict[tuple[uuid.UUID, str], list[str]] = {}
    for rid, row in first.items():
        now = current.get(rid)
        result.items.append(
            {
                "record_id": str(rid),
                "entity": row.entity,
                "restore": "delete" if row.before is None else "restore",
                "before": row.before,
                "current": now[1] if now else None,
                "conflict": rid in after_run,
            }
        )
        later_change = after_run.get(rid)
        if later_change is None or now is None:  # now is None only for a record row gone
            continue
        key = (now[0], row.entity)
        if key not in ignored:
            ignored[key] = ignored_fields(session, now[0], row.entity)
        result.conflicts.append(
            {
                "record_id": str(rid),
                "entity": row.entity,
                "later_run": str(later_change.run_id),
                "source": later_change.source,
                "action": later_change.action,
                "changes": [
                    {"field": f, "after_run": a, "current": b}
                    for f, a, b in _differences(later_change.before, now[1], ignored[key])
                ],
                "overwrites": [
                    {"field": f, "current": a, "restore": b}
                    for f, a, b in _differences(now[1], row.before, ignored[key])
                ],
            }
        )
    return result


DELETED = "(deleted)"


def _current(
    session: Session, ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[uuid.UUID, dict[str, Any] | None]]:
    """Record id → (tenant, data now; None when deleted)."""
    r = table_of(SyncRecord)
    rows = (
        session.connection()
        .execute(sa.select(r.c.id, r.c.tenant_id, r.c.data, r.c.deleted_at).where(r.c.id.in_(ids)))
        .all()
    )
    return {
        row.id: (row.tenant_id, None if row.deleted_at is not None else dict(row.data))
        for row in rows
    }


def _differences(
    a: dict[str, Any] | None, b: dict[str, Any] | None, ignore: list[str]
) -> list[tuple[str, Any, Any]]:
    """(field, value in a, value in b) for each field that differs, fields in ``ignore``
    left out; a record deleted on one side only is the field ``(deleted)``."""
    if a is None or b is None:
        return [] if a is b else [(DELETED, a is None, b is None)]
    keys = sorted((set(a) | set(b)) - set(ignore))
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)]


def rollback(
    session: Session, run_id: uuid.UUID, *, dry_run: bool = False, force: bool = False
) -> Plan:
    """Restore the records the run changed (see the module's docstring); refuses when
    later runs changed some of them, unless ``force`` (``Refused``, with the plan). With
    ``dry_run`` only the plan, which says whether it would be refused."""
    result = plan(session, run_id)
    result.forced = force
    if dry_run:
        return result
    if result.refused:
        raise Refused(result)
    if not result.items:
        return result
    src_run = session.get(SyncRun, run_id)
    assert src_run is not None
    now = clock.now()
    rb = SyncRun(
        connection_id=src_run.connection_id,
        kind="rollback",
        status="success",
        rolled_back_run_id=run_id,
        finished_at=now,
    )
    session.add(rb)
    session.flush()
    source = f"rollback:{run_id}"
    by_entity: dict[tuple[uuid.UUID, str], list[uuid.UUID]] = {}
    restored = 0
    for item in result.items:
        rec = session.get(SyncRecord, uuid.UUID(item["record_id"]))
        if rec is None or not restore_record(session, rec, item["before"], rb.id, source, now):
            continue
        by_entity.setdefault((rec.tenant_id, rec.entity), []).append(rec.id)
        restored += 1
    queue_restored(session, by_entity, rb.id)
    rb.counts = {"restored": restored}
    session.add(rb)
    audit.record(
        session,
        "sync.rollback",
        target_type="sync_run",
        target_id=run_id,
        target=str(run_id),
        after={"rollback_run": str(rb.id), "restored": restored, "forced": force},
    )
    result.applied, result.rollback_run_id = True, rb.id
    return result


def rollback_and_push(
    run_id: uuid.UUID, *, dry_run: bool = False, force: bool = False, db_url: str | None = None
) -> Plan:
    """``rollback`` in a transaction of its own; once it is applied, the pushes of the
    restored records go out at once to their tenants' connections that are not running
    (``push.deliver_tenant``)."""
    with session_scope(db_url) as session:
        result = rollback(session, run_id, dry_run=dry_run, force=force)
        tenants: set[uuid.UUID] = set()
        for item in result.items:
            rec = session.get(SyncRecord, uuid.UUID(item["record_id"]))
            if rec is not None:
                tenants.add(rec.tenant_id)
    if result.applied:
        for tenant_id in tenants:
            deliver_tenant(tenant_id, f"rollback:{run_id}", db_url=db_url)
    return result


def restore_record(
    session: Session,
    rec: SyncRecord,
    target: dict[str, Any] | None,
    rollback_run_id: uuid.UUID,
    source: str,
    now: datetime,
) -> bool:
    """Put one record back to ``target`` (None: deleted), with its change row and
    event; False when it already is deleted and should be."""
    before_state = None if rec.deleted_at else dict(rec.data)
    if target is None:
        if rec.deleted_at is not None:
            return False
        rec.deleted_at, action, after, etype = now, "delete", None, "record.deleted"
    else:
        rec.data, rec.deleted_at = dict(target), None
        rec.content_hash = mapping.content_hash(
            rec.data, ignored_fields(session, rec.tenant_id, rec.entity)
        )
        action, after, etype = "update", dict(target), "record.updated"
    rec.version += 1
    rec.source_updated_at = now
    rec.touch()
    session.add(rec)
    session.add(
        SyncChange(
            run_id=rollback_run_id,
            record_id=rec.id,
            tenant_id=rec.tenant_id,
            entity=rec.entity,
            action=action,
            source=source,
            before=before_state,
            after=after,
        )
    )
    outbox.emit(
        session,
        etype,
        {
            "record_id": str(rec.id),
            "entity": rec.entity,
            "version": rec.version,
            "source": source,
            "data": after,
        },
        rec.tenant_id,
    )
    return True


def queue_restored(
    session: Session,
    by_entity: dict[tuple[uuid.UUID, str], list[uuid.UUID]],
    rollback_run_id: uuid.UUID,
) -> int:
    """Queue the restored state's pushes to every connection of the tenant that pushes
    the entity, the source connection included; returns how many."""
    queued = 0
    for (tenant_id, entity), ids in by_entity.items():
        anchor = SyncConnection(
            id=uuid.uuid4(), name="", tenant_id=tenant_id, connector_id=uuid.uuid4()
        )
        targets = push_targets(session, anchor, entity)
        queued += queue_pushes(session, targets, entity, ids, rollback_run_id)
    return queued
