"""The apps catalogue and the own/any/explicit access rules."""

from __future__ import annotations

import json

import pytest

from mno.errors import BadInput, Conflict, NotFound
from mno.tenancy import apps, tenants
from tests.conftest import counts


def _tree(s):
    tenants.create(s, "reseller")
    tenants.create(s, "client", parent="reseller")
    tenants.create(s, "grandchild", parent="client")
    tenants.create(s, "outsider")


def test_create_derives_code(session):
    with session() as s:
        app, created = apps.create(s, "Web Shop Pro")
        assert created and app.code == "web-shop-pro"
        again, created = apps.create(s, "Web Shop Pro", if_not_exists=True)
        assert not created and again.id == app.id
    with pytest.raises(Conflict), session() as s:
        apps.create(s, "Web Shop Pro")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stack": "mainframe"},
        {"access": "public"},
        {"stack": "nex"},  # no image
        {"stack": "nex", "image": "x", "port": 0},
        {"stack": "nex", "image": "x", "port": 80, "memory": "lots"},
        {"stack": "nex", "image": "x", "port": 80, "cpus": "-1"},
        {"stack": "nex", "image": "x", "port": 80, "health_path": "health"},
        {"code": "Bad Code"},
    ],
)
def test_bad_input_writes_nothing(session, store_url, kwargs):
    with session() as s:
        tenants.ensure_system(s)
    before = counts(store_url)
    with pytest.raises(BadInput), session() as s:
        apps.create(s, "Thing", **kwargs)
    assert counts(store_url) == before


def test_access_own(session):
    with session() as s:
        _tree(s)
        apps.create(s, "Private", owner="reseller", access="own")
    with session(write=False) as s:
        assert apps.check_access(s, "private", "reseller")[0]
        assert apps.check_access(s, "private", "system")[0]
        allowed, reason = apps.check_access(s, "private", "client")
        assert not allowed and "access: own" in reason


def test_access_any_follows_hierarchy(session):
    with session() as s:
        _tree(s)
        apps.create(s, "Shared", owner="reseller", access="any")
    with session(write=False) as s:
        assert apps.check_access(s, "shared", "client")[0]
        assert apps.check_access(s, "shared", "grandchild")[0]
        assert not apps.check_access(s, "shared", "outsider")[0]


def test_access_explicit_grants(session, store_url):
    with session() as s:
        _tree(s)
        apps.create(s, "Chosen", owner="reseller", access="explicit")
    with session(write=False) as s:
        assert not apps.check_access(s, "chosen", "client")[0]
    with session() as s:
        apps.grant(s, "chosen", "outsider", can_edit=True)
    with session(write=False) as s:
        assert apps.check_access(s, "chosen", "outsider")[0]
        assert not apps.check_access(s, "chosen", "client")[0]
        assert apps.view(s, apps.get(s, "chosen")).grants == [
            {"tenant": "outsider", "can_edit": True, "granted_by": "system", "package": None}
        ]
    with session() as s:
        apps.revoke(s, "chosen", "outsider")
    with session(write=False) as s:
        assert not apps.check_access(s, "chosen", "outsider")[0]
    before = counts(store_url)
    with pytest.raises(NotFound), session() as s:
        apps.revoke(s, "chosen", "outsider")
    assert counts(store_url) == before


def test_offboarded_tenants_cannot_be_granted_apps(session, store_url, cli):
    with session() as s:
        _tree(s)
        apps.create(s, "Chosen", owner="reseller", access="explicit")
        for status in ("provisioning", "active"):
            tenants.transition(s, "outsider", status)
        tenants.offboard(s, "outsider")
    before = counts(store_url)
    refused = cli("app", "grant", "chosen", "outsider")
    assert refused.exit_code == 1 and "offboarded" in refused.stderr
    assert counts(store_url) == before
    with session(write=False) as s:
        assert not apps.check_access(s, "chosen", "outsider")[0]


def test_disabled_app_denied(session):
    with session() as s:
        _tree(s)
        apps.create(s, "Paused", owner="reseller")
        apps.set_enabled(s, "paused", False)
    with session(write=False) as s:
        allowed, reason = apps.check_access(s, "paused", "reseller")
        assert not allowed and "disabled" in reason


def test_nex_app_fields_and_update(session):
    with session() as s:
        apps.create(
            s,
            "Blog",
            stack="nex",
            image="blog:1",
            port=8080,
            env={"A": "1"},
            health_path="/health",
            memory="256M",
            cpus="0.5",
            volume_path="/data",
        )
        app = apps.update(s, "blog", image="blog:2", env={"B": "secret:BLOG_KEY"})
        assert app.memory == "256m" and apps.memory_bytes(app.memory) == 256 * 1024**2
        assert app.image == "blog:2" and app.env == {"B": "secret:BLOG_KEY"}


def test_cli_access_exit_codes(cli, sqlite_url):
    assert cli("tenant", "create", "acme").exit_code == 0
    assert cli("app", "create", "Shop", "--access", "explicit").exit_code == 0
    denied = cli("app", "access", "shop", "acme", "-o", "json")
    assert denied.exit_code == 1 and json.loads(denied.stdout)["allowed"] is False
    assert cli("app", "grant", "shop", "acme").exit_code == 0
    allowed = cli.json("app", "access", "shop", "acme")
    assert allowed["allowed"] is True
    assert cli("app", "create", "Bad", "--stack", "x").exit_code == 2


def test_delete_app(session, store_url, cli):
    from mno.store.models.sync import SyncConnector

    with session() as s:
        tenants.create(s, "acme")
        apps.create(s, "Old", access="explicit")
        apps.grant(s, "old", "acme")
        app, _ = apps.create(s, "Books", stack="connector")
        s.add(SyncConnector(name="books", app_id=app.id, spec={}, spec_hash="x"))
    before = counts(store_url)
    with pytest.raises(Conflict, match="sync_connector"), session() as s:
        apps.delete(s, "books")
    assert counts(store_url) == before
    with session() as s:
        apps.delete(s, "old")
    with pytest.raises(NotFound), session() as s:
        apps.get(s, "old")
