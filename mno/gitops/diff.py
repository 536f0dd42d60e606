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

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mno.errors import BadInput
from mno.gitops import prune as prune_mod
from mno.gitops.documents import PROTECT, Document, no_gc

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.gitops.kinds.base import Kind

DEFAULT_SOURCE = "default"
META_FIELDS = ("metadata.labels", "metadata.annotations")


@dataclass
class FieldChange:
    field: str
    before: Any
    after: Any
    drift: bool = False
    conflict: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "before": self.before, "after": self.after}
        if self.drift:
            out["drift"] = True
        if self.conflict:
            out["conflict"] = self.conflict
        return out


@dataclass
class Change:
    kind: str
    name: str
    action: str  # create | update | delete
    fields: list[FieldChange] = field(default_factory=list)
    note: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def spec_changes(self) -> dict[str, Any]:
        return {f.field: f.after for f in self.fields if f.field not in META_FIELDS}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "fields": [f.as_dict() for f in self.fields],
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Owner:
    """A row of the ownership table, as plain data."""

    kind: str
    name: str
    source: str
    labels: dict[str, Any]
    annotations: dict[str, Any]
    managed: dict[str, Any]
    target_id: str | None = None

    @property
    def protected(self) -> bool:
        return str((self.annotations or {}).get(PROTECT, "")).lower() == "true"

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "labels": self.labels,
            "annotations": self.annotations,
            "managed": self.managed,
        }


@dataclass
class ChangeSet:
    source: str
    prune: bool
    changes: list[Change] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    inventory: int = 0
    fingerprints: dict[str, str] = field(default_factory=dict)
    documents: dict[str, Document] = field(default_factory=dict)
    current: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    owners: dict[tuple[str, str], Owner] = field(default_factory=dict)
    forget: list[tuple[str, str]] = field(default_factory=list)
    target_ids: dict[str, str] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def summary(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0}
        for c in self.changes:
            out[c.action] += 1
        return out

    def conflicts(self) -> list[tuple[str, str, str]]:
        return [(c.ref, f.field, f.conflict) for c in self.changes for f in c.fields if f.conflict]

    def drift(self) -> list[tuple[str, str]]:
        return [(c.ref, f.field) for c in self.changes for f in c.fields if f.drift]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "prune": self.prune,
            "summary": self.summary(),
            "changes": [c.as_dict() for c in self.changes],
            "protected": self.protected,
            "conflicts": [
                {"resource": r, "field": f, "manager": m} for r, f, m in self.conflicts()
            ],
            "drift": [{"resource": r, "field": f} for r, f in self.drift()],
        }


def load_owners(session: Session) -> dict[tuple[str, str], Owner]:
    """Every ownership row, in one query."""
    import sqlalchemy as sa

    from mno.store.models.gitops import GitopsResource

    t = GitopsResource.__table__.c  # type: ignore[attr-defined]
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


def fingerprint(spec: dict[str, Any] | None, owner: Owner | None) -> str:
    """A digest of a resource's current spec and ownership: a saved plan compares these."""
    data = {"spec": spec, "owner": owner.as_dict() if owner else None}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_source(source: str) -> str:
    import re

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
    from mno.gitops import kinds as kinds_mod

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
    from mno.gitops import kinds as kinds_mod

    registry = registry or kinds_mod.REGISTRY
    if ref in cs.fingerprints:
        return cs.fingerprints[ref]
    kind, _, name = ref.partition("/")
    if kind not in registry:
        return "unknown-kind"
    if kind not in cs.current:
        cs.current[kind] = registry[kind].current(session)
    return fingerprint(cs.current[kind].get(name), cs.owners.get((kind, name)))
