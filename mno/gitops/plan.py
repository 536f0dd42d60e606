"""Saved plans: ``mno plan --out plan.json`` then ``mno apply plan.json``.

A plan holds the documents, the options, the change set and a fingerprint of the current
state (spec and ownership) of every resource it touches. Applying it re-reads those
targets in the apply's transaction and refuses the whole plan as stale if any of them
changed, as Terraform does; otherwise it applies exactly the planned changes. A digest
over the plan's content refuses a plan that was edited by hand.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mno import __version__, clock
from mno.errors import BadInput, Conflict
from mno.gitops import diff, documents
from mno.gitops.apply import Options, check, execute, serialize
from mno.gitops.changes import ChangeSet
from mno.gitops.kinds import REGISTRY
from mno.store.audit import jsonable

if TYPE_CHECKING:
    from sqlmodel import Session

FORMAT = "mno-plan/1"
OPTION_KEYS = ("source", "prune", "force_conflicts", "allow_empty", "allow_offboard")


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def make(session: Session, docs: list[documents.Document], opts: Options) -> dict[str, Any]:
    """A plan for ``docs``; refused up front when applying it would be refused."""
    cs = diff.compute(session, docs, source=opts.source, prune=opts.prune, fingerprints=True)
    check(cs, opts, REGISTRY)
    body = {
        "format": FORMAT,
        "mno_version": __version__,
        "created_at": jsonable(clock.now()),
        "options": {k: getattr(opts, k) for k in OPTION_KEYS},
        "documents": [jsonable(d.envelope()) for d in docs if REGISTRY[d.kind].in_store],
        "summary": cs.summary(),
        "changes": [c.as_dict() for c in cs.changes],
        "fingerprints": dict(sorted(cs.fingerprints.items())),
    }
    return body | {"digest": _digest(body)}


def save(plan: dict[str, Any], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n")
    return out


def read(path: str | Path) -> dict[str, Any]:
    """A saved plan, checked for format and integrity."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"plan {p} does not exist")
    try:
        plan = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{p} is not a plan file: {exc}") from exc
    if not isinstance(plan, dict) or plan.get("format") != FORMAT:
        raise BadInput(f"{p} is not a plan file", f"expected format {FORMAT}")
    body = {k: v for k, v in plan.items() if k != "digest"}
    if plan.get("digest") != _digest(body):
        raise BadInput(f"plan {p} was modified after it was made", "run `mno plan` again")
    if plan.get("mno_version") != __version__:
        raise BadInput(
            f"plan {p} was made by mno {plan.get('mno_version')}, this is mno {__version__}",
            "run `mno plan` again with this version",
        )
    return plan


def apply_plan(
    session: Session,
    plan: dict[str, Any],
    *,
    dry_run: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ChangeSet:
    """Apply exactly ``plan``; refuse it as stale if any target changed since planning.
    ``on_progress(done, total)`` hears of the changes written as they go."""
    opts = Options(**{k: plan["options"][k] for k in OPTION_KEYS}, dry_run=dry_run)
    docs = documents.from_data(plan["documents"])
    serialize(session)
    cs = diff.compute(session, docs, source=opts.source, prune=opts.prune)
    stale = [
        ref
        for ref, fp in plan["fingerprints"].items()
        if diff.ensure_fingerprint(session, cs, ref) != fp
    ]
    if not stale and [c.as_dict() for c in cs.changes] != plan["changes"]:
        stale = sorted(
            {c.ref for c in cs.changes} ^ {f"{c['kind']}/{c['name']}" for c in plan["changes"]}
        )
        stale = stale or ["(the change set)"]
    if stale:
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise Conflict(
            f"the plan is stale: {shown} changed after it was made", "run `mno plan` again"
        )
    check(cs, opts, REGISTRY)
    if dry_run:
        savepoint = session.begin_nested()
        try:
            execute(session, cs, REGISTRY, on_progress)
        finally:
            savepoint.rollback()
        return cs
    execute(session, cs, REGISTRY, on_progress)
    return cs
