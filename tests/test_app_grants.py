"""Grants on any app (own included), read vs edit, who may grant, the fixed owner and code,
and thumbnails and metadata: on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from mno.errors import BadInput, Forbidden
from mno.tenancy import apps, tenants
from tests.conftest import counts


def _events(url: str, type_: str) -> list[dict]:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT payload FROM outbox_event WHERE type = :t ORDER BY seq"), {"t": type_}
        ).all()
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def _audit(url: str, action: str) -> int:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM audit_entry WHERE action = :a"), {"a": action}
            ).scalar_one()
        )


def _setup(s) -> None:
    tenants.create(s, "acme")
    tenants.create(s, "client", parent="acme")
    tenants.create(s, "globex")
    tenants.create(s, "initech")
    apps.create(s, "Private", owner="acme", access="own")


def test_grant_on_an_own_app_takes_effect(session, store_url, cli):
    with session() as s:
        _setup(s)
    denied = cli("app", "access", "private", "globex", "-o", "json")
    assert denied.exit_code == 1
    assert "private to its owner acme" in json.loads(denied.stdout)["reason"]

    # the operator grants as system
    assert cli("app", "grant", "private", "globex").exit_code == 0
    answer = cli.json("app", "access", "private", "globex")
    assert answer["allowed"] is True
    assert answer["reason"] == "granted by system (read)"
    assert _events(store_url, "app.access_granted")[-1]["granted_by"] == "system"

    # on behalf of the owner: the grant records it
    assert cli("app", "grant", "private", "initech", "--as", "acme").exit_code == 0
    assert cli.json("app", "access", "private", "initech")["reason"] == (
        "granted by owner acme (read)"
    )
    shown = cli.json("app", "show", "private")
    assert {g["tenant"]: g["granted_by"] for g in shown["grants"]} == {
        "globex": "system",
        "initech": "acme",
    }


def test_only_the_owner_or_system_may_grant(session, store_url, cli):
    with session() as s:
        _setup(s)
    before = counts(store_url)
    refused = cli("app", "grant", "private", "initech", "--as", "globex")
    assert refused.exit_code == 1
    assert "globex may not grant app private" in refused.stderr
    assert counts(store_url) == before
    with pytest.raises(Forbidden), session() as s:
        apps.grant(s, "private", "initech", by="client")  # managed by the owner, still no
    assert counts(store_url) == before
    with session() as s:
        apps.grant(s, "private", "initech", by="acme")
    # revoking follows the same rule
    assert cli("app", "revoke", "private", "initech", "--as", "globex").exit_code == 1
    assert cli("app", "revoke", "private", "initech", "--as", "acme").exit_code == 0
    assert _events(store_url, "app.access_revoked")[-1]["revoked_by"] == "acme"
    assert cli("app", "access", "private", "initech").exit_code == 1


def test_read_and_edit_grants(session, store_url, cli):
    with session() as s:
        _setup(s)
        apps.create(s, "Shared", owner="acme", access="any")
        apps.grant(s, "private", "globex")
        apps.grant(s, "private", "initech", can_edit=True, by="acme")
    with session(write=False) as s:
        assert apps.check_access(s, "private", "globex", need="read") == (
            True,
            "granted by system (read)",
        )
        allowed, why = apps.check_access(s, "private", "globex", need="edit")
        assert not allowed and "read-only grant" in why
        assert apps.check_access(s, "private", "initech", need="edit") == (
            True,
            "granted by owner acme (edit)",
        )
        assert apps.check_access(s, "private", "acme", need="edit")[0]
        assert apps.check_access(s, "private", "system", need="edit")[0]
        # access: any gives a managed tenant read, not edit
        assert apps.check_access(s, "shared", "client")[0]
        allowed, why = apps.check_access(s, "shared", "client", need="edit")
        assert not allowed and "no edit grant" in why
        # a tenant outside the owner's tree is denied by access: any, until granted
        assert not apps.check_access(s, "shared", "globex")[0]
        with pytest.raises(BadInput):
            apps.check_access(s, "shared", "client", need="write")
    with session() as s:
        apps.grant(s, "shared", "globex", by="acme")
        assert apps.check_access(s, "shared", "globex")[1] == "granted by owner acme (read)"
    edit = cli("app", "access", "private", "globex", "--need", "edit", "-o", "json")
    assert edit.exit_code == 1 and json.loads(edit.stdout)["need"] == "edit"

    # changing the app on behalf of a tenant needs edit
    before = counts(store_url)
    refused = cli("app", "update", "private", "--name", "Renamed", "--as", "globex")
    assert refused.exit_code == 1
    assert "globex may not change app private" in refused.stderr
    assert counts(store_url) == before
    with pytest.raises(Forbidden), session() as s:
        apps.update(s, "shared", name="Nope", by="client")
    assert cli("app", "update", "private", "--name", "Renamed", "--as", "initech").exit_code == 0
    assert cli("app", "update", "private", "--name", "Again", "--as", "acme").exit_code == 0
    with session(write=False) as s:
        assert apps.get(s, "private").name == "Again"
    # upgrading a grant to edit lets the tenant change the app
    assert cli("app", "grant", "private", "globex", "--can-edit").exit_code == 0
    assert cli("app", "update", "private", "--name", "Third", "--as", "globex").exit_code == 0


def test_owner_and_code_are_fixed(session, store_url, cli):
    with session() as s:
        _setup(s)
    before = counts(store_url)
    refused = cli("app", "update", "private", "--owner", "globex")
    assert refused.exit_code == 2 and "owner cannot change" in refused.stderr
    with pytest.raises(BadInput, match="code cannot change"), session() as s:
        apps.update(s, "private", code="other")
    with pytest.raises(BadInput, match="stack cannot change"), session() as s:
        apps.update(s, "private", stack="nex")
    assert counts(store_url) == before
    # naming the current owner is no change
    assert cli("app", "update", "private", "--owner", "acme", "--name", "P").exit_code == 0
    with session(write=False) as s:
        view = apps.view(s, apps.get(s, "private"))
        assert (view.owner_key, view.app.name) == ("acme", "P")


def test_gitops_refuses_an_owner_change(session, store_url, cli, tmp_path):
    doc = tmp_path / "apps.yaml"
    doc.write_text(
        "kind: Tenant\nmetadata: {name: acme}\nspec: {}\n---\n"
        "kind: Tenant\nmetadata: {name: globex}\nspec: {}\n---\n"
        "kind: App\nmetadata: {name: crm}\n"
        "spec:\n  name: CRM\n  owner: acme\n"
        "  thumbnail: https://cdn.example.com/crm.png\n"
        "  metadata: {category: sales, tier: 2}\n"
    )
    assert cli("apply", "-f", str(doc)).exit_code == 0
    shown = cli.json("app", "show", "crm")
    assert shown["thumbnail"] == "https://cdn.example.com/crm.png"
    assert shown["metadata"] == {"category": "sales", "tier": 2}
    assert cli("diff", "-f", str(doc)).exit_code == 0
    doc.write_text(doc.read_text().replace("owner: acme", "owner: globex"))
    before = counts(store_url)
    refused = cli("apply", "-f", str(doc))
    assert refused.exit_code == 2 and "spec.owner cannot change" in refused.stderr
    assert counts(store_url) == before
    doc.write_text(
        doc.read_text().replace("owner: globex", "owner: acme").replace("https://cdn", "http://cdn")
    )
    bad = cli("apply", "-f", str(doc))
    assert bad.exit_code == 2 and "thumbnail" in bad.stderr


def test_thumbnail_and_metadata(session, store_url, cli):
    assert cli("tenant", "create", "acme").exit_code == 0
    created = cli(
        "app",
        "create",
        "Shop",
        "--thumbnail",
        "https://img.example.com/shop.png",
        "--metadata",
        '{"category": "commerce"}',
        "-o",
        "json",
    )
    assert created.exit_code == 0, created.stderr
    data = json.loads(created.stdout)
    assert data["thumbnail"] == "https://img.example.com/shop.png"
    assert data["metadata"] == {"category": "commerce"}
    table = cli("app", "list")
    assert "thumbnail" in table.stdout.splitlines()[0].lower()
    assert "https://img.example.com/shop.png" in table.stdout
    assert cli.json("app", "list")[0]["thumbnail"] == "https://img.example.com/shop.png"

    before = counts(store_url)
    for args in (
        ["--thumbnail", "http://img.example.com/x.png"],
        ["--thumbnail", "javascript:alert(1)"],
        ["--thumbnail", "https://" + "a" * 500 + ".com"],
        ["--metadata", "[1, 2]"],
        ["--metadata", "{not json"],
        ["--metadata", json.dumps({"blob": "x" * 5000})],
    ):
        result = cli("app", "update", "shop", *args)
        assert result.exit_code == 2, (args, result.stderr)
        bad = cli("app", "create", "Other", *args)
        assert bad.exit_code == 2, (args, bad.stderr)
    assert counts(store_url) == before

    assert cli("app", "update", "shop", "--metadata", '{"category": "retail"}').exit_code == 0
    assert cli("app", "update", "shop", "--thumbnail", "").exit_code == 0
    shown = cli.json("app", "show", "shop")
    assert shown["thumbnail"] is None and shown["metadata"] == {"category": "retail"}
    changes = _events(store_url, "app.updated")
    assert len(changes) == 2 and _audit(store_url, "app.update") == 2
