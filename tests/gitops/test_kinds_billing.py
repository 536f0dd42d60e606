"""Billing catalogue kinds (Metric, Plan, Coupon, TaxRate): apply, diff, round trip."""

from __future__ import annotations

import pytest

pytest.importorskip("mno.billing.documents")

from mno.gitops import diff, documents, export  # noqa: E402
from mno.gitops.apply import apply_path  # noqa: E402
from tests.gitops.conftest import empty_store  # noqa: E402

CATALOGUE = """
kind: Metric
metadata: {name: api_calls}
spec: {aggregation: count}
---
kind: Plan
metadata: {name: pro}
spec:
  name: Pro
  currency: EUR
  trial_days: 14
  charges:
    - {kind: fixed, amount: "49.00"}
    - {kind: usage, metric: api_calls, model: per_unit, unit_price: "0.001"}
---
kind: Coupon
metadata: {name: launch}
spec: {kind: percentage, value: "20", duration: once}
---
kind: TaxRate
metadata: {name: fr-vat}
spec: {country: FR, rate: "20", inclusive: false}
"""


def _apply(session, path, **opts):
    with session() as s:
        return apply_path(s, path, **opts)


def test_billing_catalogue_round_trip_and_versioned_update(
    session, store_url, write, tmp_path
) -> None:
    write("billing.yaml", CATALOGUE)
    cs = _apply(session, write.root)
    assert [c.ref for c in cs.changes] == [
        "Metric/api_calls",
        "Plan/pro",
        "Coupon/launch",
        "TaxRate/fr-vat",
    ]
    with session(write=False) as s:
        assert not diff.compute(s, documents.load([write.root])).has_changes
        first = export.dumps(export.export(s))
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    _apply(session, tmp_path / "export.yaml")
    with session(write=False) as s:
        assert export.dumps(export.export(s)) == first
    # a price change makes a new plan version through the billing domain
    write("billing.yaml", CATALOGUE.replace('"49.00"', '"59.00"'))
    cs = _apply(session, write.root)
    assert [(c.ref, [f.field for f in c.fields]) for c in cs.changes] == [("Plan/pro", ["charges"])]
    import sqlalchemy as sa

    from mno.store.models.billing import Plan

    with session(write=False) as s:
        versions = s.execute(sa.select(Plan.version).where(Plan.code == "pro")).scalars().all()
        assert sorted(versions) == [1, 2]
        assert not diff.compute(s, documents.load([write.root])).has_changes
