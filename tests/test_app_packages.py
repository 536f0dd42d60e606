"""Packages of apps: granted together, revoked together, direct grants left alone."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mno.errors import Conflict, Forbidden, NotFound
from mno.tenancy import apps, packages, tenants
from tests.conftest import counts


def _types(url: str) -> list[str]:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return list(conn.execute(sa.text("SELECT type FROM outbox_event ORDER BY seq")).scalars())


def _grants(s, code: str) -> dict[str, tuple[bool, str | None]]:
    return {
        g["tenant"]: (g["can_edit"], g["package"]) for g in apps.view(s, apps.get(s, code)).grants
    }


def _catalogue(s) -> None:
    tenants.create(s, "acme")
    tenants.create(s, "globex")
    apps.create(s, "CRM", owner="acme", access="own")
    apps.create(s, "Wiki", access="explicit")
    apps.create(s, "Mail", access="explicit")


def test_package_grant_and_revoke(session, store_url, cli):
    with session() as s:
        _catalogue(s)
    created = cli(
        "app", "package", "create", "office", "--app", "crm", "--app", "wiki", "-o", "json"
    )
    assert created.exit_code == 0, created.stderr
    assert json.loads(created.stdout)["apps"] == ["crm", "wiki"]
    # a direct grant given before the package stays after the package goes
    assert cli("app", "grant", "wiki", "globex").exit_code == 0
    assert cli("app", "package", "grant", "office", "globex", "--can-edit").exit_code == 0
    answer = cli.json("app", "access", "crm", "globex", "--need", "edit")
    assert answer["allowed"] and answer["reason"] == "granted by system via package office (edit)"
    with session(write=False) as s:
        assert _grants(s, "crm") == {"globex": (True, "office")}
        assert _grants(s, "wiki") == {"globex": (False, None)}
    shown = cli.json("app", "package", "show", "office")
    assert shown["grants"] == [{"tenant": "globex", "can_edit": True, "granted_by": "system"}]
    listed = cli.json("app", "package", "list")
    assert [p["name"] for p in listed] == ["office"]

    # a package cannot be deleted while granted
    before = counts(store_url)
    assert cli("app", "package", "delete", "office", "--yes").exit_code == 1
    assert counts(store_url) == before

    revoked = cli.json("app", "package", "revoke", "office", "globex")
    assert revoked["apps"] == ["crm"]
    with session(write=False) as s:
        assert _grants(s, "crm") == {}
        assert _grants(s, "wiki") == {"globex": (False, None)}
        assert not apps.check_access(s, "crm", "globex")[0]
        assert apps.check_access(s, "wiki", "globex")[0]
    types = _types(store_url)
    for t in ("app_package.created", "app_package.granted", "app_package.revoked"):
        assert t in types
    assert types.count("app.access_revoked") == 1
    assert cli("app", "package", "delete", "office", "--yes").exit_code == 0
    assert "app_package.deleted" in _types(store_url)
    assert cli("app", "package", "show", "office").exit_code == 1


def test_overlapping_packages_and_direct_grants(session):
    with session() as s:
        _catalogue(s)
        packages.create(s, "one", ["wiki", "mail"])
        packages.create(s, "two", ["mail"])
        packages.grant(s, "one", "globex")
        packages.grant(s, "two", "globex", can_edit=True)
        # mail came from package one first; two does not take it over while one holds it
        assert _grants(s, "mail") == {"globex": (False, "one")}
    with session() as s:
        assert packages.revoke(s, "one", "globex") == ["wiki"]
        # mail moves to package two, with two's edit right
        assert _grants(s, "mail") == {"globex": (True, "two")}
        assert _grants(s, "wiki") == {}
    with session() as s:
        # a direct grant makes the package's grant direct: revoking the package leaves it
        apps.grant(s, "mail", "globex")
        assert _grants(s, "mail") == {"globex": (False, None)}
        assert packages.revoke(s, "two", "globex") == []
        assert _grants(s, "mail") == {"globex": (False, None)}


def test_package_rules(session, store_url, cli):
    with session() as s:
        _catalogue(s)
        packages.create(s, "mine", ["crm"])
    before = counts(store_url)
    for args in (
        ["Bad Name", "--app", "crm"],
        ["dup", "--app", "crm", "--app", "crm"],
    ):
        assert cli("app", "package", "create", *args).exit_code == 2, args
    assert cli("app", "package", "create", "ghost", "--app", "nope").exit_code == 1
    assert cli("app", "package", "create", "mine", "--app", "wiki").exit_code == 1
    # only the owner of every app (or system) may grant the package
    assert cli("app", "package", "grant", "mine", "globex", "--as", "globex").exit_code == 1
    assert counts(store_url) == before
    with pytest.raises(NotFound), session() as s:
        packages.revoke(s, "mine", "globex")
    with session() as s:
        packages.grant(s, "mine", "globex", by="acme")
        assert apps.check_access(s, "crm", "globex")[1] == (
            "granted by owner acme via package mine (read)"
        )
    with pytest.raises(Forbidden), session() as s:
        packages.revoke(s, "mine", "globex", by="globex")
    with pytest.raises(Conflict), session() as s:
        packages.delete(s, "mine")
    # deleting an app takes it out of its packages
    with session() as s:
        packages.revoke(s, "mine", "globex", by="acme")
        apps.delete(s, "crm")
        assert packages.app_codes(s, packages.get(s, "mine")) == []


def test_gitops_leaves_package_grants_alone(session, store_url, cli, tmp_path):
    doc = tmp_path / "apps.yaml"
    doc.write_text(
        "kind: Tenant\nmetadata: {name: acme}\nspec: {}\n---\n"
        "kind: Tenant\nmetadata: {name: globex}\nspec: {}\n---\n"
        "kind: App\nmetadata: {name: wiki}\n"
        "spec:\n  name: Wiki\n  access: explicit\n  grants: [{tenant: acme}]\n"
    )
    assert cli("apply", "-f", str(doc)).exit_code == 0
    with session() as s:
        packages.create(s, "docs", ["wiki"])
        packages.grant(s, "docs", "globex")
    # the package's grant is not the document's: nothing to diff, and apply keeps it
    assert cli("diff", "-f", str(doc)).exit_code == 0
    assert cli("apply", "-f", str(doc)).exit_code == 0
    with session(write=False) as s:
        assert _grants(s, "wiki") == {"acme": (False, None), "globex": (False, "docs")}
        # access: explicit, any or own: a grant opens the app to a tenant outside the rule
        assert apps.check_access(s, "wiki", "globex") == (
            True,
            "granted by system via package docs (read)",
        )
