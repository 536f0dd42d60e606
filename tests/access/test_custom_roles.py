"""Custom roles: defined with permissions, given to members, honoured by the access check."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mno.access import custom_roles, members
from mno.access.check import check
from mno.errors import BadInput, Conflict
from mno.tenancy import tenants
from tests.conftest import counts


def _types(url: str) -> list[str]:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return list(conn.execute(sa.text("SELECT type FROM outbox_event ORDER BY seq")).scalars())


def test_custom_role_permissions_are_honoured(session, store_url, acme, cli):
    created = cli(
        "role",
        "create",
        "billing",
        "--permission",
        "read",
        "--permission",
        "manage_billing",
        "-o",
        "json",
    )
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["permissions"] == ["manage_billing", "read"]
    assert "role.created" in _types(store_url)
    assert cli("member", "add", "acme", "carol@acme.io", "--role", "billing").exit_code == 0
    with session(write=False) as s:
        assert check(s, "carol@acme.io", acme, "manage_billing") == (
            True,
            "carol@acme.io is billing in acme",
        )
        assert check(s, "carol@acme.io", acme, "read")[0]
        allowed, why = check(s, "carol@acme.io", acme, "invite")
        assert not allowed and "not a permission of the custom role billing" in why
    answer = cli("access", "check", "carol@acme.io", "acme", "delete_tenant")
    assert answer.exit_code == 0 and answer.stdout.startswith("denied:")

    # the list shows built-in and custom roles
    listed = cli.json("role", "list")
    assert [r["name"] for r in listed] == [
        "member",
        "power_user",
        "admin",
        "super_admin",
        "billing",
    ]
    assert cli.json("role", "show", "billing")["members"] == 1

    # held roles cannot be deleted
    before = counts(store_url)
    assert cli("role", "delete", "billing", "--yes").exit_code == 1
    assert counts(store_url) == before
    assert cli("member", "set-role", "acme", "carol@acme.io", "member").exit_code == 0
    assert cli("role", "delete", "billing", "--yes").exit_code == 0
    assert "role.deleted" in _types(store_url)
    assert cli("role", "show", "billing").exit_code == 1


def test_bad_roles_are_refused(session, store_url, acme, cli):
    before = counts(store_url)
    for args in (
        ["x", "--permission", "fly"],
        ["admin", "--permission", "read"],
        ["Bad Name", "--permission", "read"],
        ["waytoolongforarole", "--permission", "read"],
        ["ok", "--permission", "read", "--tenant", "nobody"],
    ):
        result = cli("role", "create", *args)
        assert result.exit_code in (1, 2), (args, result.stderr)
    assert cli("role", "create", "x", "--permission", "fly").exit_code == 2
    assert cli("member", "add", "acme", "dan@acme.io", "--role", "ghost").exit_code == 2
    assert counts(store_url) == before
    with pytest.raises(BadInput), session() as s:
        custom_roles.create(s, "empty", [])
    with session() as s:
        custom_roles.create(s, "auditor", ["read"])
    with pytest.raises(Conflict), session() as s:
        custom_roles.create(s, "auditor", ["read", "sync"])


def test_tenant_roles_and_acting_with_a_custom_role(session, store_url, acme):
    with session() as s:
        tenants.create(s, "globex")
        custom_roles.create(s, "hr", ["read", "manage_members"], tenant_key="acme")
        members.add(s, "acme", "hr@acme.io", "hr")
    # a tenant's role is not seen by another tenant
    with pytest.raises(BadInput, match="unknown role"), session() as s:
        members.add(s, "globex", "hr@globex.io", "hr")
    with session() as s:
        # a tenant's own definition wins over a platform-wide one of the same name
        custom_roles.create(s, "hr", ["read"])
        members.add(s, "globex", "hr@globex.io", "hr")
    with session(write=False) as s:
        assert check(s, "hr@acme.io", acme, "manage_members")[0]
        assert not check(s, "hr@globex.io", "globex", "manage_members")[0]
    with session() as s:
        # manage_members lets it add members, but never admins
        members.add(s, "acme", "new@acme.io", "member", by="hr@acme.io")
        with pytest.raises(members.Forbidden, match="admin roles"):
            members.add(s, "acme", "boss@acme.io", "admin", by="hr@acme.io")
    with pytest.raises(members.Forbidden, match="cannot manage members"), session() as s:
        members.add(s, "globex", "x@globex.io", "member", by="hr@globex.io")
    with session(write=False) as s:
        names = [r["name"] for r in custom_roles.list_roles(s, tenant_key="globex")]
        assert names.count("hr") == 1


def test_custom_roles_in_invites_and_teams(session, store_url, acme):
    from mno.access import invites, teams

    with session() as s:
        custom_roles.create(s, "recruiter", ["read", "invite"])
        custom_roles.create(s, "lead", ["read", "manage_teams"])
        members.add(s, "acme", "rec@acme.io", "recruiter")
        members.add(s, "acme", "lead@acme.io", "lead")
        # an invite may carry a custom role; a recruiter may invite, but not admins
        invites.create(s, "acme", "new@acme.io", "lead", by="rec@acme.io")
        with pytest.raises(members.Forbidden, match="cannot invite admins"):
            invites.create(s, "acme", "boss@acme.io", "admin", by="rec@acme.io")
        teams.create(s, "acme", "sales", by="lead@acme.io")
    with pytest.raises(members.Forbidden, match="cannot manage teams"), session() as s:
        teams.create(s, "acme", "ops", by="rec@acme.io")
    with pytest.raises(members.Forbidden, match="cannot invite"), session() as s:
        invites.create(s, "acme", "x@acme.io", "member", by="lead@acme.io")
    with pytest.raises(BadInput, match="unknown role"), session() as s:
        invites.create(s, "acme", "y@acme.io", "ghost")
