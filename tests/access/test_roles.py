"""Role rules, team scoping, invites and credentials, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from mno import clock
from mno.access import invites, keys, members, teams, tokens, users
from mno.access.check import check
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.tenancy import tenants
from tests.conftest import counts


def test_only_super_admin_manages_billing_and_deletes(session, acme):
    with session(write=False) as s:
        assert check(s, "owner@acme.io", acme, "manage_billing")[0]
        assert check(s, "owner@acme.io", acme, "delete_tenant")[0]
        allowed, reason = check(s, "admin@acme.io", acme, "manage_billing")
        assert not allowed and "super_admin" in reason
        assert not check(s, "admin@acme.io", acme, "delete_tenant")[0]
        assert check(s, "admin@acme.io", acme, "invite")[0]
        assert check(s, "admin@acme.io", acme, "manage_teams")[0]
        assert check(s, "admin@acme.io", acme, "manage_instances")[0]
        assert not check(s, "bob@acme.io", acme, "invite")[0]
        assert check(s, "bob@acme.io", acme, "read")[0]
        allowed, reason = check(s, "stranger@x.io", acme, "read")
        assert not allowed and "no user" in reason
        with pytest.raises(BadInput):
            check(s, "bob@acme.io", acme, "fly")


def test_admin_cannot_grant_super_admin(session, store_url, acme):
    before = counts(store_url)
    with session() as s, pytest.raises(members.Forbidden, match="cannot grant super_admin"):
        members.add(s, acme, "eve@acme.io", "super_admin", by="admin@acme.io")
    with session() as s, pytest.raises(members.Forbidden, match="cannot grant super_admin"):
        members.set_role(s, acme, "bob@acme.io", "super_admin", by="admin@acme.io")
    with session() as s, pytest.raises(members.Forbidden, match="cannot manage"):
        members.set_role(s, acme, "admin@acme.io", "member", by="bob@acme.io")
    assert counts(store_url) == before
    with session() as s:
        members.set_role(s, acme, "bob@acme.io", "power_user", by="admin@acme.io")
        members.set_role(s, acme, "bob@acme.io", "super_admin", by="owner@acme.io")
    with session(write=False) as s:
        assert members.role_of(s, users.get(s, "bob@acme.io"), tenants.get(s, acme)) == (
            "super_admin"
        )


def test_last_super_admin_cannot_be_demoted_or_removed(session, store_url, acme):
    before = counts(store_url)
    with session() as s, pytest.raises(Conflict, match="last super_admin"):
        members.set_role(s, acme, "owner@acme.io", "admin")
    with session() as s, pytest.raises(Conflict, match="last super_admin"):
        members.remove(s, acme, "owner@acme.io")
    assert counts(store_url) == before
    with session() as s:
        members.set_role(s, acme, "admin@acme.io", "super_admin", by="owner@acme.io")
        members.set_role(s, acme, "owner@acme.io", "admin", by="owner@acme.io")
    with session() as s, pytest.raises(Conflict, match="last super_admin"):
        members.remove(s, acme, "admin@acme.io")


def test_team_scoping(session, acme):
    inside, outside = uuid.uuid4(), uuid.uuid4()
    with session(write=False) as s:
        allowed, reason = check(s, "bob@acme.io", acme, "open", inside)
        assert allowed and "no team" in reason
    with session() as s:
        teams.create(s, acme, "sales", by="admin@acme.io")
        teams.add_member(s, acme, "sales", "bob@acme.io")
        teams.add_instance(s, acme, "sales", str(inside))
    with session(write=False) as s:
        assert check(s, "bob@acme.io", acme, "open", inside) == (
            True,
            f"team sales of bob@acme.io includes instance {inside}",
        )
        allowed, reason = check(s, "bob@acme.io", acme, "open", outside)
        assert not allowed and "no team" in reason
        assert check(s, "admin@acme.io", acme, "open", outside)[0]
    with session() as s, pytest.raises(members.Forbidden):
        teams.create(s, acme, "ops", by="bob@acme.io")
    with session() as s:
        members.remove(s, acme, "bob@acme.io", by="admin@acme.io")
    with session(write=False) as s:
        assert teams.list_teams(s, acme)[0]["members"] == []
        allowed, reason = check(s, "bob@acme.io", acme, "open", inside)
        assert not allowed and "not a member" in reason


def test_disabled_user_is_denied(session, acme):
    with session() as s:
        users.set_status(s, "bob@acme.io", "disabled")
    with session(write=False) as s:
        allowed, reason = check(s, "bob@acme.io", acme, "read")
        assert not allowed and "disabled" in reason


def test_invite_flow_single_use_and_hash_only(session, store_url, acme):
    from sqlalchemy import text

    from mno.store.db import get_engine

    with session() as s:
        issued = invites.create(s, acme, "new@acme.io", "power_user", by="admin@acme.io")
    assert issued.token and issued.view["status"] == "pending"
    with get_engine(store_url).connect() as conn:
        dump = str(conn.execute(text("SELECT * FROM access_invite")).all())
        events = str(conn.execute(text("SELECT payload FROM outbox_event")).all())
    assert issued.token not in dump and issued.token not in events
    assert "invite.created" in str(
        get_engine(store_url).connect().execute(text("SELECT type FROM outbox_event")).all()
    )
    with session() as s:
        view = invites.accept(s, issued.token, name="New")
    assert view["status"] == "accepted"
    with session() as s, pytest.raises(InvalidTransition, match="accepted"):
        invites.accept(s, issued.token)
    with session(write=False) as s:
        assert check(s, "new@acme.io", acme, "read")[0]
    with session() as s, pytest.raises(NotFound):
        invites.accept(s, "mnoinv_nope")


def test_invite_expires_after_ttl(session, acme, api_profile):
    clock.set_now(clock.now())
    with session() as s:
        issued = invites.create(s, acme, "late@acme.io")
    clock.advance(timedelta(days=3, seconds=1))
    with session() as s, pytest.raises(InvalidTransition, match="expired"):
        invites.accept(s, issued.token)
    api_profile(access={"invite_ttl": "1h"})
    with session() as s:
        short = invites.create(s, acme, "soon@acme.io")
    clock.advance(timedelta(minutes=59))
    with session() as s:
        assert invites.accept(s, short.token)["status"] == "accepted"


def test_invite_staged_then_sent_and_revoked(session, acme):
    with session() as s:
        staged = invites.create(s, acme, "st@acme.io", stage=True)
    assert staged.token is None and staged.view["status"] == "staged"
    with session() as s:
        sent = invites.send(s, staged.view["id"])
    assert sent.token and sent.view["status"] == "pending"
    with session() as s:
        invites.revoke(s, staged.view["id"])
    with session() as s, pytest.raises(NotFound):
        invites.accept(s, sent.token)
    with session() as s, pytest.raises(members.Forbidden):
        invites.create(s, acme, "x@acme.io", by="bob@acme.io")


def test_user_tokens_expire_and_revoke(session, acme):
    clock.set_now(clock.now())
    with session() as s:
        one = tokens.create(s, "bob@acme.io", ttl="1h")
        two = tokens.create(s, "bob@acme.io")
    with session(write=False) as s:
        assert tokens.resolve(s, one.secret).email == "bob@acme.io"
    clock.advance(timedelta(hours=1, seconds=1))
    with session(write=False) as s:
        assert tokens.resolve(s, one.secret) is None
        assert tokens.resolve(s, two.secret) is not None
    with session() as s:
        assert tokens.revoke(s, two.view["id"])["status"] == "revoked"
    with session(write=False) as s:
        assert tokens.resolve(s, two.secret) is None


def test_key_rotation_keeps_old_key_for_grace(session, app_key):
    clock.set_now(clock.now())
    with session() as s:
        new = keys.rotate(s, "crm", grace="1h")
    with session(write=False) as s:
        assert keys.authenticate(s, app_key["key_id"], app_key["secret"]) is not None
        assert keys.authenticate(s, new.key.key_id, new.secret) is not None
        assert keys.authenticate(s, new.key.key_id, app_key["secret"]) is None
    clock.advance(timedelta(hours=1, seconds=1))
    with session(write=False) as s:
        assert keys.authenticate(s, app_key["key_id"], app_key["secret"]) is None
        assert keys.authenticate(s, new.key.key_id, new.secret) is not None
        listed = keys.list_keys(s, "crm")
    assert {k["status"] for k in listed} == {"active", "expired"}
    assert new.secret not in str(listed) and new.key.secret_hash not in str(listed)
