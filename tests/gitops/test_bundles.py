"""``kind: Bundle``: validate, diff, plan, apply (a second apply is a no-op), update, prune
(archives), export round trip."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from mno.billing import bundles
from mno.errors import BadInput
from mno.gitops import diff, documents, export
from mno.gitops import plan as gitops_plan
from mno.gitops.apply import Options, apply_path
from mno.store.models.billing import Bundle
from mno.store.models.core import AuditEntry, Event
from tests.gitops.conftest import empty_store, row_counts

CATALOGUE = """
kind: Plan
metadata: {name: crm}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "30.00"}
---
kind: Plan
metadata: {name: helpdesk}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "20.00"}
---
kind: Bundle
metadata: {name: suite}
spec:
  name: Suite
  currency: EUR
  percent_off: "10"
  plans: [crm, helpdesk]
"""


def _apply(session: Any, path: Any, **opts: Any) -> Any:
    with session() as s:
        return apply_path(s, path, **opts)


def _types(session: Any, prefix: str) -> list[str]:
    with session(write=False) as s:
        rows = s.execute(
            sa.select(Event.type).where(Event.type.like(f"{prefix}%")).order_by(Event.seq)
        )
        return list(rows.scalars())


def test_apply_creates_the_bundle_and_a_second_apply_is_a_no_op(
    session: Any, store_url: str, write: Any
) -> None:
    write("billing.yaml", CATALOGUE)
    cs = _apply(session, write.root)
    assert [(c.ref, c.action) for c in cs.changes] == [
        ("Plan/crm", "create"),
        ("Plan/helpdesk", "create"),
        ("Bundle/suite", "create"),
    ]
    with session(write=False) as s:
        b = bundles.get(s, "suite")
        assert (b.name, b.currency, b.percent_off, b.price) == ("Suite", "EUR", "10", None)
        assert (b.plans, b.apps) == (["crm", "helpdesk"], [])
        assert not diff.compute(s, documents.load([write.root])).has_changes
        audit = s.execute(sa.select(AuditEntry.action).where(AuditEntry.target == "suite"))
        assert list(audit.scalars()) == ["bundle.create"]
    assert _types(session, "bundle.") == ["bundle.created"]
    before = row_counts(store_url)
    again = _apply(session, write.root)
    assert again.changes == []
    after = row_counts(store_url)
    # nothing but the apply's own record (its event and ownership bookkeeping) is written
    assert after["billing_bundle"] == before["billing_bundle"] == 1
    assert _types(session, "bundle.") == ["bundle.created"]


def test_change_is_diffed_planned_and_applied_as_an_update(
    session: Any, write: Any, tmp_path: Any
) -> None:
    write("billing.yaml", CATALOGUE)
    _apply(session, write.root)
    write("billing.yaml", CATALOGUE.replace('percent_off: "10"', 'price: "42.00"'))
    docs = documents.load([write.root])
    with session(write=False) as s:
        cs = diff.compute(s, docs)
        assert [(c.ref, c.action) for c in cs.changes] == [("Bundle/suite", "update")]
        assert sorted(f.field for f in cs.changes[0].fields) == ["percent_off", "price"]
        saved = gitops_plan.make(s, docs, Options())
    path = gitops_plan.save(saved, tmp_path / "plan.json")
    with session() as s:
        gitops_plan.apply_plan(s, gitops_plan.read(path))
    with session(write=False) as s:
        b = bundles.get(s, "suite")
        assert (b.price, b.percent_off) == ("42.00", None)
    assert _types(session, "bundle.") == ["bundle.created", "bundle.updated"]


def test_prune_archives_and_export_round_trips(
    session: Any, store_url: str, write: Any, tmp_path: Any
) -> None:
    write("billing.yaml", CATALOGUE)
    _apply(session, write.root, source="billing")
    with session(write=False) as s:
        first = export.dumps(export.export(s))
    assert "kind: Bundle" in first
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    _apply(session, tmp_path / "export.yaml")
    with session(write=False) as s:
        assert export.dumps(export.export(s)) == first
    empty_store(store_url)
    _apply(session, write.root, source="billing")
    write("billing.yaml", CATALOGUE.split("---\nkind: Bundle")[0])
    cs = _apply(session, write.root, source="billing", prune=True)
    assert [(c.ref, c.action) for c in cs.changes] == [("Bundle/suite", "delete")]
    with session(write=False) as s:
        (row,) = s.execute(sa.select(Bundle)).scalars()
        assert row.archived_at is not None  # archived, not deleted
        assert not diff.compute(s, documents.load([write.root]), source="billing").has_changes
    assert _types(session, "bundle.")[-1] == "bundle.archived"


def test_validate_refuses_a_bundle_without_pricing_or_with_a_missing_plan(
    session: Any, store_url: str, write: Any
) -> None:
    write("billing.yaml", CATALOGUE.replace('  percent_off: "10"\n', ""))
    with pytest.raises(BadInput, match="either price or percent_off"):
        documents.load([write.root])
    write("billing.yaml", CATALOGUE.replace("[crm, helpdesk]", "[crm, nope]"))
    with session(write=False):
        pass  # the store exists: its row counts are compared
    before = row_counts(store_url)
    assert before["billing_plan"] == 0
    with pytest.raises(BadInput, match="nope"):
        _apply(session, write.root)
    assert row_counts(store_url) == before
