"""The data of a change set: field changes, resource changes, ownership rows.

``ChangeSet`` is what ``mno.gitops.diff.compute`` returns and what ``mno.gitops.prune``
adds deletes to, ``mno.gitops.apply`` writes and ``mno.gitops.plan`` saves. ``fingerprint``
digests a resource's current state and ownership so a saved plan can tell whether the
store moved since it was made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from mno.gitops.documents import PROTECT, Document

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


def fingerprint(spec: dict[str, Any] | None, owner: Owner | None) -> str:
    """A digest of a resource's current spec and ownership: a saved plan compares these."""
    data = {"spec": spec, "owner": owner.as_dict() if owner else None}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]
