"""Safe prune: delete only what the same source applied and the documents no longer hold.

The inventory of a source is the set of ownership rows recorded with that source. Prune
is off unless asked for. A resource whose last applied document carried the annotation
``mno.io/protect: "true"`` is never pruned. A prune that would delete every resource of a
source (every one not protected), or that runs with no documents at all, is refused
without ``allow_empty``: an empty or mistyped path must not wipe the platform. Deleting a
tenant means offboarding it, which needs ``allow_offboard``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mno.errors import Conflict
from mno.gitops.changes import Change, FieldChange, fingerprint

if TYPE_CHECKING:
    from mno.gitops.changes import ChangeSet
    from mno.gitops.kinds.base import Kind


def inventory(cs: ChangeSet, registry: dict[str, Kind]) -> list[tuple[str, str]]:
    """(kind, name) of every resource recorded for the change set's source."""
    return sorted(
        key
        for key, owner in cs.owners.items()
        if owner.source == cs.source and key[0] in registry and registry[key[0]].in_store
    )


def plan_deletes(cs: ChangeSet, registry: dict[str, Kind]) -> None:
    """Add a delete for each inventory resource missing from the documents."""
    items = inventory(cs, registry)
    cs.inventory = len(items)
    for kind, name in items:
        ref = f"{kind}/{name}"
        if ref in cs.documents:
            continue
        owner = cs.owners[(kind, name)]
        cur = cs.current.get(kind, {}).get(name)
        cs.fingerprints[ref] = fingerprint(cur, owner)
        if cur is None:
            cs.forget.append((kind, name))  # deleted by hand: drop it from the inventory
            continue
        if owner.protected:
            cs.protected.append(ref)
            continue
        fields = [FieldChange(k, cur.get(k), None) for k in sorted(owner.managed)]
        note = "offboard, then delete" if registry[kind].delete_flag == "--allow-offboard" else None
        cs.changes.append(Change(kind, name, "delete", fields, note))


def check_guards(
    cs: ChangeSet,
    registry: dict[str, Kind],
    *,
    allow_empty: bool = False,
    allow_offboard: bool = False,
) -> None:
    """Refuse a prune that empties the source or offboards tenants without the flags."""
    deletes = [c for c in cs.changes if c.action == "delete"]
    if not deletes:
        return
    empties = not cs.documents or len(deletes) >= cs.inventory - len(cs.protected)
    if empties and not allow_empty:
        raise Conflict(
            f"prune would delete every resource ({len(deletes)}) applied from source {cs.source!r}",
            "check the path; give --allow-empty if that is really meant",
        )
    needs: dict[str, list[str]] = {}
    for c in deletes:
        flag = registry[c.kind].delete_flag
        if flag == "--allow-offboard" and not allow_offboard:
            needs.setdefault(flag, []).append(c.ref)
    for flag, refs in needs.items():
        shown = ", ".join(refs[:5]) + (f" and {len(refs) - 5} more" if len(refs) > 5 else "")
        raise Conflict(f"prune would offboard and delete {shown}", f"give {flag} to allow it")


def describe(cs: ChangeSet) -> dict[str, Any]:
    return {"source": cs.source, "inventory": cs.inventory, "protected": cs.protected}
