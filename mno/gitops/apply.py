"""Apply documents in one transaction, in dependency order, through the domain functions.

Creates and updates go kind by kind with dependencies first (tenants before apps, parents
before children); deletes go the other way. Any error leaves the caller's transaction to
roll back, so nothing is written. Afterwards the ownership table records, per resource,
the source and the value of each field the documents set. ``dry_run`` runs the whole
apply inside a savepoint and rolls it back, so domain rules are checked too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col

from mno import clock
from mno.errors import Conflict
from mno.gitops import diff, documents, prune
from mno.gitops import kinds as kinds_mod
from mno.gitops.changes import Change, ChangeSet
from mno.gitops.diff import DEFAULT_SOURCE
from mno.gitops.kinds import REGISTRY
from mno.store import audit, outbox
from mno.store.db import is_sqlite
from mno.store.models.gitops import GitopsResource
from mno.store.types import table_of

if TYPE_CHECKING:
    from mno.gitops.kinds.base import Kind

ProgressFn = Callable[[int, int], None]


@dataclass
class Options:
    source: str = DEFAULT_SOURCE
    prune: bool = False
    dry_run: bool = False
    force_conflicts: bool = False
    allow_empty: bool = False
    allow_offboard: bool = False


def apply_path(
    session: Session,
    path: str | Path | Iterable[str | Path],
    source: str = DEFAULT_SOURCE,
    **options: Any,
) -> ChangeSet:
    """Validate and apply every document under ``path`` (e.g. ``configs/``)."""
    paths = [path] if isinstance(path, str | Path) else list(path)
    docs = documents.load(paths)
    return apply_documents(session, docs, Options(source=source, **options))


def apply_documents(
    session: Session,
    docs: list[documents.Document],
    opts: Options,
    on_progress: ProgressFn | None = None,
) -> ChangeSet:
    """Compute the change set of ``docs`` and apply it (or only check it, ``dry_run``).
    ``on_progress(done, total)`` hears of the changes written as they go."""
    serialize(session)
    cs = diff.compute(session, docs, source=opts.source, prune=opts.prune)
    check(cs, opts, REGISTRY)
    if opts.dry_run:
        savepoint = session.begin_nested()
        try:
            execute(session, cs, REGISTRY, on_progress)
            session.flush()
        finally:
            savepoint.rollback()
        return cs
    with documents.no_gc():
        execute(session, cs, REGISTRY, on_progress)
    return cs


APPLY_LOCK = 0x6D6E6F_0600  # "mno" + the gitops revision: one apply at a time


def serialize(session: Session) -> None:
    """One apply at a time: the state read for the change set stays true until commit.
    PostgreSQL takes a transaction-scoped advisory lock; SQLite writers already hold the
    database lock (BEGIN IMMEDIATE)."""
    if not is_sqlite(session.get_bind()):
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPLY_LOCK})


def check(cs: ChangeSet, opts: Options, registry: dict[str, Kind]) -> None:
    """Refuse conflicts (without force) and unsafe prunes before anything is written."""
    conflicts = cs.conflicts()
    if conflicts and not opts.force_conflicts:
        shown = "; ".join(f"{r} spec.{f} is managed by {m!r}" for r, f, m in conflicts[:3])
        more = f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
        raise Conflict(f"conflict: {shown}{more}", "give --force-conflicts to take them over")
    prune.check_guards(
        cs, registry, allow_empty=opts.allow_empty, allow_offboard=opts.allow_offboard
    )


def _topological(
    items: list[tuple[str, dict[str, Any]]], kind: Kind
) -> list[tuple[str, dict[str, Any]]]:
    """Items of one kind with same-kind references (e.g. parents) first. A cycle keeps
    the given order (the domain refuses it with a clear message)."""
    by_name = dict(items)
    done: set[str] = set()
    seen: set[str] = set()
    out: list[tuple[str, dict[str, Any]]] = []
    for name, _ in items:
        stack = [(name, False)]
        while stack:
            current, expanded = stack.pop()
            if current in done:
                continue
            if expanded:
                done.add(current)
                out.append((current, by_name[current]))
                continue
            if current in seen:
                continue  # on the path already: a cycle
            seen.add(current)
            stack.append((current, True))
            for ref_kind, ref in kind.refs(current, by_name[current]):
                if ref_kind == kind.kind and ref in by_name and ref not in done:
                    stack.append((ref, False))
    return out


def execute(
    session: Session,
    cs: ChangeSet,
    registry: dict[str, Kind],
    on_progress: ProgressFn | None = None,
) -> None:
    """Write the change set: domain calls in dependency order, then ownership rows.
    ``on_progress(done, total)`` is called after each batch of creates and each update or
    delete, with the count of changes written so far."""
    order = kinds_mod.order()
    by_kind: dict[str, list[Change]] = {}
    for change in cs.changes:
        by_kind.setdefault(change.kind, []).append(change)
    total = sum(
        1
        for c in cs.changes
        if c.action in ("create", "delete") or (c.action == "update" and c.spec_changes())
    )
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    for kind_name in order:
        adapter = registry[kind_name]
        changes = by_kind.get(kind_name, [])
        creates = [
            (c.name, cs.documents[c.ref].full_spec()) for c in changes if c.action == "create"
        ]
        if creates:
            ids = adapter.create_many(session, _topological(creates, adapter)) or {}
            cs.target_ids.update({f"{kind_name}/{name}": str(t) for name, t in ids.items()})
            advance(len(creates))
        updates = {c.name: c for c in changes if c.action == "update" and c.spec_changes()}
        items = [(name, cs.documents[c.ref].full_spec()) for name, c in updates.items()]
        for name, spec in _topological(items, adapter):
            replaced = adapter.update(session, name, updates[name].spec_changes(), spec)
            if replaced is not None:
                cs.target_ids[f"{kind_name}/{name}"] = str(replaced)
            advance(1)
    for kind_name in reversed(order):
        adapter = registry[kind_name]
        deletes = [c for c in by_kind.get(kind_name, []) if c.action == "delete"]
        current = cs.current.get(kind_name, {})
        items = [(c.name, current.get(c.name) or {}) for c in deletes]
        for name, _ in reversed(_topological(items, adapter)):
            adapter.delete(session, name)
            advance(1)
    _record_ownership(session, cs)
    summary = cs.summary()
    if cs.has_changes:
        audit.record(
            session,
            "gitops.apply",
            target_type="gitops",
            target_id=cs.source,
            target=cs.source,
            after=summary | {"prune": cs.prune},
        )
        outbox.emit(session, "gitops.applied", {"source": cs.source} | summary)


def _record_ownership(session: Session, cs: ChangeSet) -> None:
    conflicted = {(c.ref, f.field) for c in cs.changes for f in c.fields}
    inserts: list[dict[str, Any]] = []
    now = clock.now()
    for ref, doc in cs.documents.items():
        owner = cs.owners.get((doc.kind, doc.name))
        managed: dict[str, Any] = {}
        if owner:
            # fields other sources manage stay theirs; ours are rewritten below
            managed = {k: v for k, v in owner.managed.items() if v.get("manager") != cs.source}
        for key, value in doc.desired().items():
            entry = managed.get(key)
            if entry and entry.get("manager") != cs.source and (ref, key) not in conflicted:
                continue  # equal value set by another source: it stays the manager
            managed[key] = {"manager": cs.source, "value": value}
        row = {
            "source": cs.source,
            "labels": doc.labels,
            "annotations": doc.annotations,
            "managed": managed,
        }
        if owner is None:
            inserts.append(
                row
                | {
                    "id": uuid.uuid4(),
                    "kind": doc.kind,
                    "name": doc.name,
                    "target_id": cs.target_ids.get(ref),
                    "created_at": now,
                    "updated_at": now,
                    "applied_at": now,
                }
            )
        elif ref in cs.target_ids:  # the update replaced the row: link the new id
            session.execute(
                sa.update(GitopsResource)
                .where(col(GitopsResource.kind) == doc.kind, col(GitopsResource.name) == doc.name)
                .values(**row, target_id=cs.target_ids[ref], updated_at=now, applied_at=now)
            )
        elif owner.as_dict() != row:
            session.execute(
                sa.update(GitopsResource)
                .where(col(GitopsResource.kind) == doc.kind, col(GitopsResource.name) == doc.name)
                .values(**row, updated_at=now, applied_at=now)
            )
    if inserts:
        table = table_of(GitopsResource)
        session.connection().execute(table.insert(), inserts)
    gone = [(c.kind, c.name) for c in cs.changes if c.action == "delete"] + cs.forget
    for kind, name in gone:
        session.execute(
            sa.delete(GitopsResource).where(
                col(GitopsResource.kind) == kind, col(GitopsResource.name) == name
            )
        )
