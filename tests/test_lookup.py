"""Objects by a unique id prefix (mno.store.lookup), on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from mno.errors import BadInput, NotFound
from mno.store import lookup
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

IDS = {
    "t1": "abcd1234-0000-4000-8000-000000000001",
    "t2": "abcd5678-0000-4000-8000-000000000002",
    "low": "abce0000-0000-0000-0000-000000000000",
    "high": "ffffffff-ffff-ffff-ffff-ffffffffffff",
}


def _add(session, ids: dict[str, str]) -> None:
    with session() as s:
        for key, tid in ids.items():
            s.add(Tenant(id=uuid.UUID(tid), key=key, name=key))


def test_a_unique_prefix_names_one_row(session) -> None:
    _add(session, IDS)
    with session(write=False) as s:
        assert lookup.by_id_or_prefix(s, Tenant, "abcd1", "tenant").key == "t1"
        assert lookup.by_id_or_prefix(s, Tenant, "ABCD5", "tenant").key == "t2"
        assert lookup.by_id_or_prefix(s, Tenant, "abcd5678-00", "tenant").key == "t2"
        # the ends of the range: a prefix followed by zeros, and by f's
        assert lookup.by_id_or_prefix(s, Tenant, "abce", "tenant").key == "low"
        assert lookup.by_id_or_prefix(s, Tenant, "ffff", "tenant").key == "high"
        assert lookup.by_id_or_prefix(s, Tenant, IDS["t1"], "tenant").key == "t1"
        assert lookup.by_id_or_prefix(s, Tenant, uuid.UUID(IDS["t2"]), "tenant").key == "t2"
        assert lookup.resolve_id(s, Tenant, "abcd12", "tenant") == uuid.UUID(IDS["t1"])
        # the domain's get takes a key first, then an id or a prefix
        assert tenants.get(s, "abcd56").key == "t2"
        assert tenants.get(s, "t1").id == uuid.UUID(IDS["t1"])


def test_an_ambiguous_prefix_is_bad_input_naming_the_candidates(session) -> None:
    _add(session, IDS)
    with session(write=False) as s, pytest.raises(BadInput) as err:
        lookup.by_id_or_prefix(s, Tenant, "abcd", "tenant")
    assert err.value.exit_code == 2
    assert str(err.value) == (
        f"ambiguous tenant id 'abcd': it could be {IDS['t1']}, {IDS['t2']} (give more of the id)"
    )


def test_at_most_five_candidates_are_named(session) -> None:
    many = {f"m{i}": f"0000000{i}-0000-4000-8000-000000000000" for i in range(7)}
    _add(session, many)
    with session(write=False) as s, pytest.raises(BadInput) as err:
        tenants.get(s, "0000")
    message = str(err.value)
    assert message.count("-4000-") == 5 and "and more" in message
    assert "00000005" not in message


def test_unknown_and_malformed_references(session) -> None:
    _add(session, IDS)
    with session(write=False) as s:
        with pytest.raises(NotFound) as missing:
            lookup.by_id_or_prefix(s, Tenant, "1234", "tenant", "see `mno tenant list`")
        assert missing.value.exit_code == 1
        assert str(missing.value) == "tenant 1234 not found (see `mno tenant list`)"
        with pytest.raises(NotFound):
            lookup.by_id_or_prefix(s, Tenant, str(uuid.uuid4()), "tenant")
        for bad in ("abc", "xyz1", "abcd1234-0000-4000-8000-0000000000012", ""):
            with pytest.raises(BadInput, match="invalid tenant id"):
                lookup.by_id_or_prefix(s, Tenant, bad, "tenant")
        assert lookup.find(s, Tenant, "abc", "tenant") is None
        with pytest.raises(NotFound):
            tenants.get(s, "abc")
