"""tenants.create_many: the batched path apply uses writes what create() writes."""

from __future__ import annotations

from typing import Any

import pytest

from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, outbox
from mno.tenancy import tenants
from tests.conftest import counts

ITEM: dict[str, Any] = {
    "name": "Acme",
    "tier": "silo",
    "domains": ["b.example.com", "a.example.com"],
    "currency": "eur",
    "timezone": "Europe/Paris",
    "city": "Paris",
    "country": "fr",
    "metadata": {"k": 1},
}


def _strip(data: Any) -> Any:
    """Drop values that differ between two runs (ids, timestamps)."""
    if isinstance(data, dict):
        return {
            k: _strip(v)
            for k, v in data.items()
            if k not in ("id", "parent_id", "created_at", "updated_at")
        }
    return data


def test_create_many_matches_create(session, store_url) -> None:
    with session() as s:
        tenants.create(s, "one", parent=None, **ITEM)
        tenants.create(s, "one-child", parent="one")
    with session(write=False) as s:
        single_audit = [_strip(e.diff) for e in audit.list_entries(s, action="tenant.create")]
        single_events = [_strip(e.payload) for e in outbox.list_events(s)]
        single = tenants.view(s, tenants.get(s, "one")).as_dict()
    from tests.gitops.conftest import empty_store

    empty_store(store_url)
    with session() as s:
        # children may come before their parents
        tenants.create_many(s, [{"key": "one-child", "parent": "one"}, {"key": "one", **ITEM}])
    with session(write=False) as s:
        many_audit = [_strip(e.diff) for e in audit.list_entries(s, action="tenant.create")]
        many_events = [_strip(e.payload) for e in outbox.list_events(s)]
        many = tenants.view(s, tenants.get(s, "one")).as_dict()
        assert tenants.view(s, tenants.get(s, "one-child")).parent_key == "one"
    assert _strip(many) == _strip(single)
    assert sorted(map(str, many_audit)) == sorted(map(str, single_audit))
    assert sorted(map(str, many_events)) == sorted(map(str, single_events))


@pytest.mark.parametrize(
    ("items", "error", "match"),
    [
        ([{"key": "a1", "parent": "nope"}], NotFound, "nope"),
        ([{"key": "a1", "parent": "a2"}, {"key": "a2", "parent": "a1"}], Conflict, "cycle"),
        (
            [
                {"key": "a1", "domains": ["x.example.com"]},
                {"key": "a2", "domains": ["x.example.com"]},
            ],
            Conflict,
            "x.example.com",
        ),
        ([{"key": "a1"}, {"key": "a1"}], Conflict, "already exists"),
        ([{"key": "system"}], Conflict, "reserved"),
        ([{"key": "a1", "currency": "XXX"}], BadInput, "XXX"),
        (
            [
                {"key": "l1"},
                {"key": "l2", "parent": "l1"},
                {"key": "l3", "parent": "l2"},
                {"key": "l4", "parent": "l3"},
                {"key": "l5", "parent": "l4"},
            ],
            Conflict,
            "too deep",
        ),
    ],
)
def test_create_many_refuses_like_create(session, store_url, items, error, match) -> None:
    with session() as s:
        tenants.ensure_system(s)
    before = counts(store_url)
    with pytest.raises(error, match=match), session() as s:
        tenants.create_many(s, items)
    assert counts(store_url) == before


def test_create_many_refuses_a_domain_another_tenant_holds(session, store_url) -> None:
    with session() as s:
        tenants.create(s, "old", domains=["x.example.com"])
    before = counts(store_url)
    with pytest.raises(Conflict, match="x.example.com already belongs"), session() as s:
        tenants.create_many(s, [{"key": "a1"}, {"key": "a2", "domains": ["x.example.com"]}])
    assert counts(store_url) == before
