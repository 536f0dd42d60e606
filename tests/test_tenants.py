"""Tenants: creation, hierarchy, status machine, contacts, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.tenancy import tenants
from tests.conftest import counts


def test_create_and_show(session, store_url):
    with session() as s:
        t, created = tenants.create(s, "acme", name="Acme", domains=["Acme.COM"], currency="eur")
        assert created
    with session(write=False) as s:
        view = tenants.view(s, tenants.get(s, "acme")).as_dict()
    assert view["status"] == "pending_provision"
    assert view["parent"] == "system"
    assert view["domains"] == ["acme.com"]
    assert view["currency"] == "EUR"
    assert counts(store_url) == (2, 2)  # system + acme


def test_if_not_exists_is_idempotent(session, store_url):
    with session() as s:
        tenants.create(s, "acme")
    before = counts(store_url)
    with session() as s:
        _, created = tenants.create(s, "acme", if_not_exists=True)
    assert not created
    assert counts(store_url) == before


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"key": "A"}, BadInput),
        ({"key": "-ab"}, BadInput),
        ({"key": "a" * 41}, BadInput),
        ({"key": "ok-key", "currency": "EUX"}, BadInput),
        ({"key": "ok-key", "timezone": "Mars/Base"}, BadInput),
        ({"key": "ok-key", "domains": ["not a domain"]}, BadInput),
        ({"key": "ok-key", "parent": "nope"}, NotFound),
        ({"key": "ok-key", "tier": "gold"}, BadInput),
        ({"key": "system"}, Conflict),
    ],
)
def test_bad_input_writes_nothing(session, store_url, kwargs, error):
    with session() as s:
        tenants.create(s, "first")
    before = counts(store_url)
    kwargs = dict(kwargs)
    key = kwargs.pop("key")
    with pytest.raises(error), session() as s:
        tenants.create(s, key, **kwargs)
    assert counts(store_url) == before


def test_domains_unique_across_tenants(session, store_url):
    with session() as s:
        tenants.create(s, "one", domains=["shared.example.com"])
    before = counts(store_url)
    with pytest.raises(Conflict), session() as s:
        tenants.create(s, "two", domains=["shared.example.com"])
    assert counts(store_url) == before


def test_hierarchy_depth_and_cycles(session):
    with session() as s:
        tenants.create(s, "l1")
        tenants.create(s, "l2", parent="l1")
        tenants.create(s, "l3", parent="l2")
        tenants.create(s, "l4", parent="l3")  # system, l1, l2, l3 above: 4 levels
    with pytest.raises(Conflict, match="too deep"), session() as s:
        tenants.create(s, "l5", parent="l4")
    with pytest.raises(Conflict, match="cycle"), session() as s:
        tenants.update(s, "l1", parent="l3")
    with session() as s:
        tenants.create(s, "other")
    # moving l3 (with l4 below it) under "other" keeps it within the limit
    with session() as s:
        tenants.update(s, "l3", parent="other")
        assert [a.key for a in tenants.ancestors(s, tenants.get(s, "l4"))] == [
            "l3",
            "other",
            "system",
        ]


def test_status_machine(session, store_url):
    with session() as s:
        tenants.create(s, "acme")
    before = counts(store_url)
    with pytest.raises(InvalidTransition, match="may go to: provisioning"), session() as s:
        tenants.suspend(s, "acme", "arrears")
    assert counts(store_url) == before
    with session() as s:
        assert tenants.provision(s, "acme").status == "active"
        assert tenants.suspend(s, "acme", "arrears").status_reason == "arrears"
        assert tenants.resume(s, "acme").status == "active"
        assert tenants.offboard(s, "acme").status == "offboarded"
    before = counts(store_url)
    with pytest.raises(InvalidTransition, match="final"), session() as s:
        tenants.resume(s, "acme")
    with pytest.raises(BadInput, match="reason"), session() as s:
        tenants.suspend(s, "acme", " ")
    assert counts(store_url) == before


def test_transition_events(session):
    from mno.store import outbox

    with session() as s:
        tenants.create(s, "acme")
        tenants.provision(s, "acme")
    with session(write=False) as s:
        events = outbox.list_events(s, event_type="tenant.status_changed", after_seq=0)
    assert [(e.payload["from"], e.payload["to"]) for e in events] == [
        ("pending_provision", "provisioning"),
        ("provisioning", "active"),
    ]
    assert [e.seq for e in events] == sorted(e.seq for e in events)


def test_delete_refuses_manager(session):
    with session() as s:
        tenants.create(s, "parent")
        tenants.create(s, "child", parent="parent")
    with pytest.raises(Conflict, match="manages"), session() as s:
        tenants.delete(s, "parent")
    with session() as s:
        tenants.delete(s, "child")
        tenants.delete(s, "parent")
    with pytest.raises(NotFound), session() as s:
        tenants.get(s, "parent")


def test_contacts(session):
    with session() as s:
        tenants.create(s, "acme")
        tenants.add_contact(s, "acme", name="Ann", email="ann@acme.com")
        tenants.add_contact(s, "acme", name="Bob", email="bob@acme.com", primary=True)
    with session(write=False) as s:
        contacts = tenants.list_contacts(s, "acme")
    assert [c.email for c in contacts] == ["bob@acme.com", "ann@acme.com"]
    with pytest.raises(BadInput), session() as s:
        tenants.add_contact(s, "acme", name="X", email="not-an-email")
    with session() as s:
        tenants.remove_contact(s, "acme", "ann@acme.com")
        assert len(tenants.list_contacts(s, "acme")) == 1


def test_cli_exit_codes(cli, sqlite_url):
    assert cli("tenant", "create", "acme", "--currency", "EUR").exit_code == 0
    dup = cli("tenant", "create", "acme")
    assert dup.exit_code == 1
    assert dup.stderr.strip() == (
        "Error: tenant acme already exists (use --if-not-exists to accept that)"
    )
    bad = cli("tenant", "create", "Bad_Key")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: invalid key")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert cli("tenant", "show", "missing").exit_code == 1
    assert cli("tenant", "create", "x1", "--bogus").exit_code == 2
    rows = cli.json("tenant", "list")
    assert [r["key"] for r in rows] == ["acme"]
    assert rows[0]["currency"] == "EUR"
