"""Connec reads: one record (by canonical id or by an app's own id), filtered pages of
records, a record's history, and the rollback of a Connec transaction.

A page is ordered by ``updated_at, id`` unless ``$orderby`` says otherwise; its cursor
is opaque text, and pages are keyset pages: the next page starts after the last row of
the page before. With the default order the cursor holds the last row's (updated_at, id)
(on the index ``ix_sync_record_connec_page``); with ``$orderby`` it holds the last row's
sort values and id (``_after``), nulls sorting after every value.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno.connec import entities, filters
from mno.connec.writes import Writer, app_ids_of, view
from mno.errors import BadInput, NotFound
from mno.store import audit, outbox
from mno.store.models.sync import SyncChange, SyncIdMap, SyncRecord, SyncRun
from mno.store.types import table_of
from mno.sync import rollback as sync_rollback

if TYPE_CHECKING:
    from sqlmodel import Session

MAX_LIMIT = 1000


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no {what} {value}") from None


def get(
    session: Session, writer: Writer, entity: str, record_id: str, *, deleted: bool = False
) -> dict[str, Any]:
    """One record of the tenant; a deleted one only with ``deleted`` (its tombstone)."""
    entities.get(entity)
    rid = _uuid(record_id, f"{entity} record")
    r = table_of(SyncRecord)
    row = session.execute(
        sa.select(r).where(r.c.id == rid, r.c.tenant_id == writer.tenant_id, r.c.entity == entity)
    ).first()
    if row is None or (row.deleted_at is not None and not deleted):
        raise NotFound(f"no {entity} record {record_id}")
    return view(row, app_ids_of(session, writer, [row.id]))


def get_by_app_id(session: Session, writer: Writer, entity: str, app_id: str) -> dict[str, Any]:
    """The record the calling app knows as ``app_id``."""
    entities.get(entity)
    m = table_of(SyncIdMap)
    rid = session.execute(
        sa.select(m.c.record_id).where(
            m.c.connection_id == writer.map_id, m.c.entity == entity, m.c.external_id == app_id
        )
    ).scalar_one_or_none()
    if rid is None:
        raise NotFound(f"no {entity} record with app id {app_id}")
    return get(session, writer, entity, str(rid))


@dataclass
class Page:
    records: list[dict[str, Any]]
    next: str | None


def _encode(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _decode(text: str) -> dict[str, Any]:
    try:
        out = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        raise BadInput("bad cursor", "pass the `next` value of the previous page") from None
    if not isinstance(out, dict):
        raise BadInput("bad cursor", "pass the `next` value of the previous page")
    return out


def list_records(
    session: Session,
    writer: Writer,
    entity: str,
    *,
    filter: str | None = None,
    orderby: str | None = None,
    select: str | None = None,
    updated_since: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
    deleted: bool = False,
) -> Page:
    """A page of the tenant's records of ``entity`` (see the module's docstring)."""
    ent = entities.get(entity)
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInput(f"limit must be between 1 and {MAX_LIMIT}")
    r = table_of(SyncRecord)
    stmt = sa.select(r).where(r.c.tenant_id == writer.tenant_id, r.c.entity == entity)
    if not deleted:
        stmt = stmt.where(r.c.deleted_at.is_(None))
    postgres = session.get_bind().dialect.name == "postgresql"
    clause = filters.where(filter, r, ent, postgres=postgres)
    if clause is not None:
        stmt = stmt.where(clause)
    if updated_since is not None:
        if updated_since.tzinfo is None:  # a time without an offset is UTC
            updated_since = updated_since.replace(tzinfo=UTC)
        stmt = stmt.where(r.c.updated_at >= updated_since)
    fields = _fields(select, ent)
    order = filters.order_by(orderby, ent)
    at = _decode(cursor) if cursor else {}
    sort: list[tuple[Any, str, bool]] = []  # $orderby: (expression, type, descending)
    if order:
        sort = [(*filters.column(r, ent, name), desc) for name, desc in order]
        if at:
            stmt = stmt.where(_after(sort, r.c.id, at))
        stmt = stmt.add_columns(*(expr.label(f"_k{n}") for n, (expr, _, _) in enumerate(sort)))
        stmt = stmt.order_by(
            *(
                expr.desc().nulls_first() if desc else expr.asc().nulls_last()
                for expr, _, desc in sort
            ),
            r.c.id,
        )
    else:
        if at:
            try:
                u, i = datetime.fromisoformat(at["u"]), uuid.UUID(at["i"])
            except (KeyError, ValueError, TypeError):
                raise BadInput("bad cursor", "pass the `next` value of the previous page") from None
            stmt = stmt.where(sa.tuple_(r.c.updated_at, r.c.id) > sa.tuple_(u, i))
        stmt = stmt.order_by(r.c.updated_at, r.c.id)
    rows = session.execute(stmt.limit(limit + 1)).all()
    page = rows[:limit]
    mapped = app_ids_of(session, writer, [row.id for row in page])
    out = []
    for row in page:
        shown = view(row, mapped)
        if fields is not None:
            shown["data"] = {k: v for k, v in shown["data"].items() if k in fields}
        out.append(shown)
    nxt = None
    if len(rows) > limit:
        last = page[-1]
        nxt = _encode(
            {"k": [_key_text(getattr(last, f"_k{n}")) for n in range(len(sort))], "i": str(last.id)}
            if order
            else {"u": last.updated_at.isoformat(), "i": str(last.id)}
        )
    return Page(out, nxt)


def _key_text(value: Any) -> Any:
    """A sort value as the cursor's JSON keeps it (decimals and times as text)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _key_value(value: Any, kind: str) -> Any:
    """A sort value read back from a cursor, for comparison with its field of ``kind``."""
    if value is None:
        return None
    if kind in ("decimal", "number"):
        return Decimal(str(value))
    if kind in ("integer", "version"):
        return int(value)
    if kind == "time":
        return datetime.fromisoformat(str(value))
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(value)
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def _after(sort: list[tuple[Any, str, bool]], id_col: Any, at: dict[str, Any]) -> Any:
    """The keyset condition of an ``$orderby`` page: the rows after the cursor's last row
    (its sort values and id) in the page order, where a null sorts after every value
    (ascending: nulls last; descending: nulls first, as PostgreSQL's default). A row
    inserted meanwhile lands before or after the cursor by its own values, so the pages
    that follow never skip nor repeat a row that was there when paging started."""
    bad = BadInput("bad cursor", "pass the `next` value of the previous page")
    try:
        values = at["k"]
        last_id = uuid.UUID(str(at["i"]))
        if not isinstance(values, list) or len(values) != len(sort):
            raise bad
        keys = [
            uuid.UUID(str(v)) if expr is id_col and v is not None else _key_value(v, kind)
            for v, (expr, kind, _) in zip(values, sort, strict=True)
        ]
    except (KeyError, ValueError, TypeError, ArithmeticError):
        raise bad from None
    ors = []
    equal: list[Any] = []
    for (expr, _kind, desc), value in zip(sort, keys, strict=True):
        if value is None:
            beyond = expr.is_not(None) if desc else sa.false()
            same = expr.is_(None)
        else:
            bound = sa.bindparam(None, value, type_=expr.type)
            beyond = expr < bound if desc else sa.or_(expr > bound, expr.is_(None))
            same = expr == bound
        ors.append(sa.and_(*equal, beyond))
        equal.append(same)
    ors.append(sa.and_(*equal, id_col > last_id))
    return sa.or_(*ors)


def _fields(select: str | None, ent: entities.Entity) -> set[str] | None:
    if not select or not select.strip():
        return None
    names = {s.strip() for s in select.split(",") if s.strip()}
    for name in names:
        ent.field_type(name)
    return names


def history(session: Session, writer: Writer, entity: str, record_id: str) -> list[dict[str, Any]]:
    """Every change of one record, oldest first: transaction_id, action, source, before,
    after, at."""
    get(session, writer, entity, record_id, deleted=True)
    c = table_of(SyncChange)
    rows = session.execute(
        sa.select(c)
        .where(c.c.record_id == uuid.UUID(record_id), c.c.tenant_id == writer.tenant_id)
        .order_by(c.c.seq)
    ).all()
    return [
        {
            "seq": row.seq,
            "transaction_id": str(row.run_id),
            "action": row.action,
            "source": row.source,
            "before": row.before,
            "after": row.after,
            "at": audit.utc_text(row.created_at),
        }
        for row in rows
    ]


def rollback(
    session: Session,
    writer: Writer,
    transaction_id: str,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> sync_rollback.Plan:
    """Roll back a transaction that changed this tenant's records, with the rules and
    conflict checks of ``mno sync rollback`` (``sync.rollback.Refused`` when a later
    change touched one of its records, unless ``force``). The restored records are
    announced as ``connec.<entity>.updated|deleted`` to every subscribed app."""
    run_id = _uuid(transaction_id, "transaction")
    c = table_of(SyncChange)
    tenants = {
        row[0]
        for row in session.execute(sa.select(c.c.tenant_id).where(c.c.run_id == run_id).distinct())
    }
    if session.get(SyncRun, run_id) is None or tenants != {writer.tenant_id}:
        raise NotFound(f"no transaction {transaction_id}")
    plan = sync_rollback.rollback(session, run_id, dry_run=dry_run, force=force)
    if plan.applied and plan.rollback_run_id is not None:
        r = table_of(SyncRecord)
        restored = session.execute(
            sa.select(r.c.id, r.c.entity, r.c.version, r.c.data, r.c.deleted_at).where(
                r.c.id.in_([uuid.UUID(i["record_id"]) for i in plan.items])
            )
        ).all()
        outbox.emit_many(
            session,
            [
                (
                    f"connec.{row.entity}.{'deleted' if row.deleted_at else 'updated'}",
                    {
                        "record_id": str(row.id),
                        "entity": row.entity,
                        "version": row.version,
                        "source": f"rollback:{run_id}",
                        "source_app_id": None,
                        "data": None if row.deleted_at else row.data,
                    },
                    writer.tenant_id,
                )
                for row in restored
                if _known_event(row.entity)
            ],
        )
    return plan


def _known_event(entity: str) -> bool:
    from mno.events import is_known

    return is_known(f"connec.{entity}.updated")
