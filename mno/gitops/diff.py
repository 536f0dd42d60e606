"""Change sets: what applying documents would do, field by field.

For each document the current state of its resource is read (one query set per kind)
and compared on the fields the document sets. A field whose current value differs from
the value recorded at the last apply is **drift** (changed by hand); a field set last by
another source is a **conflict** (``--force-conflicts`` overrides it). A field the same
source set before and no longer sets goes back to its default, as server-side apply does.
With ``prune``, resources recorded for the same source and missing from the documents
become deletes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import sqlalchemy as sa

from mno.errors import BadInput
from mno.gitops import kinds as kinds_mod
from mno.gitops import prune as prune_mod
from mno.gitops.changes import Change, ChangeSet, FieldChange, Owner, fingerprint
from mno.gitops.documents import Document, no_gc
from mno.store.models.gitops import GitopsResource
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.gitops.kinds.base import Kind

DEFAULT_SOURCE = "default"


def load_owners(session: Session) -> dict[tuple[str, str], Owner]:
    """Every ownership row, in one query."""
    t = table_of(GitopsResource).c
    rows = session.execute(
        sa.select(t.kind, t.name, t.source, t.labels, t.annotations, t.managed, t.target_id)
    ).all()
    return {
        (r.kind, r.name): Owner(
            r.kind,
            r.name,
            r.source,
            r.labels or {},
            r.annotations or {},
            r.managed or {},
            r.target_id,
        )
        for r in rows
    }


def check_source(source: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,99}$", source or ""):
        raise BadInput(f"invalid source {source!r}", "letters, digits and _.:/- up to 100")
    return source


def compute(
    session: Session,
    docs: list[Document],
    *,
    source: str = DEFAULT_SOURCE,
    prune: bool = False,
    registry: dict[str, Kind] | None = None,
    fingerprints: bool = False,
) -> ChangeSet:
    """The changes applying ``docs`` from ``source`` would make (nothing is written).
    With ``fingerprints`` each target's state digest is kept too (for saved plans)."""
    with no_gc():
        return _compute(session, docs, source, prune, registry, fingerprints)


def _compute(
    session: Session,
    docs: list[Document],
    source: str,
    prune: bool,
    registry: dict[str, Kind] | None,
    fingerprints: bool,
) -> ChangeSet:
    registry = registry or kinds_mod.REGISTRY
    source = check_source(source)
    cs = ChangeSet(source=source, prune=prune)
    store_docs = [d for d in docs if registry[d.kind].in_store]
    cs.documents = {d.ref: d for d in store_docs}
    cs.owners = load_owners(session)
    needed = {d.kind for d in store_docs}
    if prune:
        needed |= {k for (k, _), o in cs.owners.items() if o.source == source and k in registry}
    for kind in kinds_mod.order(sorted(needed)):
        cs.current[kind] = registry[kind].current(session)

    for doc in store_docs:
        adapter = registry[doc.kind]
        cur = cs.current[doc.kind].get(doc.name)
        owner = cs.owners.get((doc.kind, doc.name))
        desired = doc.desired()
        if fingerprints:
            cs.fingerprints[doc.ref] = fingerprint(cur, owner)
        if cur is None:
            fields = [FieldChange(k, None, v) for k, v in desired.items()]
            fields += _meta_changes(doc, None)
            cs.changes.append(Change(doc.kind, doc.name, "create", fields))
            continue
        fields = []
        for key, value in desired.items():
            before = cur.get(key)
            if before == value:
                continue
            if key in adapter.immutable:
                raise BadInput(
                    f"{doc.file}:{doc.line}: {doc.ref}: spec.{key} cannot change "
                    f"({before!r} → {value!r})",
                    "create a new resource instead",
                )
            entry = owner.managed.get(key) if owner else None
            drift = entry is not None and entry.get("value") != before
            manager = entry.get("manager") if entry else None
            conflict = manager if manager and manager != source else None
            fields.append(FieldChange(key, before, value, drift, conflict))
        if owner is not None:
            # a field this source set before and no longer sets goes back to its default
            for key, entry in owner.managed.items():
                if key in desired or entry.get("manager") != source or key in adapter.immutable:
                    continue
                default = adapter.default(key)
                if key in cur and cur[key] != default:
                    fields.append(FieldChange(key, cur[key], default))
        fields += _meta_changes(doc, owner)
        if fields:
            cs.changes.append(Change(doc.kind, doc.name, "update", fields))

    if prune:
        prune_mod.plan_deletes(cs, registry)
    order = {k: i for i, k in enumerate(kinds_mod.order())}
    rank = {"create": 0, "update": 0, "delete": 1}
    cs.changes.sort(key=lambda c: (rank[c.action], order.get(c.kind, 99), c.name))
    return cs


def _meta_changes(doc: Document, owner: Owner | None) -> list[FieldChange]:
    out = []
    before_labels = owner.labels if owner else {}
    before_annotations = owner.annotations if owner else {}
    if doc.labels != before_labels:
        out.append(FieldChange("metadata.labels", before_labels or None, doc.labels or None))
    if doc.annotations != before_annotations:
        out.append(
            FieldChange("metadata.annotations", before_annotations or None, doc.annotations or None)
        )
    return out


def ensure_fingerprint(
    session: Session, cs: ChangeSet, ref: str, registry: dict[str, Kind] | None = None
) -> str:
    """The fingerprint of any resource, loading its kind's state when not yet loaded."""
    registry = registry or kinds_mod.REGISTRY
    if ref in cs.fingerprints:
        return cs.fingerprints[ref]
    kind, _, name = ref.partition("/")
    if kind not in registry:
        return "unknown-kind"
    if kind not in cs.current:
        cs.current[kind] = registry[kind].current(session)
    return fingerprint(cs.current[kind].get(name), cs.owners.get((kind, name)))
