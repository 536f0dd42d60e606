"""OIDC provider state in the store (SQLite and PostgreSQL): sealed signing keys, rotation
and pruning, hashed client secrets, consent, and the CLI's commands."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import select

from mno import clock
from mno.store.models.core import AuditEntry, Event
from mno.store.models.oidc import OidcClient, OidcKey

REDIRECT = "https://crm.example.com/oidc/callback"


def _app(session) -> None:
    from mno.tenancy import apps, tenants

    with session() as s:
        tenants.create(s, "acme", name="Acme")
        apps.create(s, "CRM", code="crm", owner="acme")


def test_keys_are_sealed_rotated_published_then_pruned(session):
    from mno.sso import keys

    clock.set_now(clock.now())
    with session() as s:
        first = {k.alg: k.kid for k in keys.ensure(s)}
    assert set(first) == {"RS256", "ES256"}
    with session(write=False) as s:
        rows = list(s.exec(select(OidcKey)))
        for row in rows:
            assert "PRIVATE KEY" not in row.private_sealed
            assert "d" not in row.public_jwk
        assert keys.signer(s, "ES256").kid == first["ES256"]
    with session() as s:
        second = {k.alg: k.kid for k in keys.rotate(s)}
    with session(write=False) as s:
        published = {k["kid"] for k in keys.published(s)[1]["keys"]}
        assert published == set(first.values()) | set(second.values())
        assert keys.signer(s, "RS256").kid == second["RS256"]
        status = {r["kid"]: r["status"] for r in keys.list_keys(s)}
        assert {status[k] for k in first.values()} == {"retired"}
    # not yet: a token signed just before the rotation may still be alive
    with session() as s:
        assert keys.prune(s) == 0
    clock.advance(keys.publish_after_retire() + timedelta(seconds=1))
    with session() as s:
        assert keys.prune(s) == 2
    with session(write=False) as s:
        published = {k["kid"] for k in keys.published(s)[1]["keys"]}
        assert published == set(second.values())
        types = [e.type for e in s.exec(select(Event))]
        assert "sso.keys_rotated" in types
        assert "sso.keys_pruned" in [a.action for a in s.exec(select(AuditEntry))]


def test_client_secret_is_stored_hashed_and_compared(session):
    from mno.sso import clients

    _app(session)
    with session() as s:
        issued = clients.enable(s, "crm", [REDIRECT])
        client_id, secret = issued.client.client_id, issued.secret
    assert secret
    with session(write=False) as s:
        row = s.exec(select(OidcClient)).one()
        assert secret not in json.dumps(row.model_dump(mode="json"))
        assert clients.authenticate(s, client_id, secret) is not None
        assert clients.authenticate(s, client_id, secret + "x") is None
        assert clients.authenticate(s, client_id, None) is None
        assert clients.authenticate(s, "nobody", secret) is None
        for entry in s.exec(select(AuditEntry)):
            assert secret not in json.dumps(entry.diff)
        for event in s.exec(select(Event)):
            assert secret not in json.dumps(event.payload)
    with session() as s:
        rotated = clients.rotate_secret(s, "crm").secret
    with session(write=False) as s:
        assert clients.authenticate(s, client_id, secret) is None
        assert clients.authenticate(s, client_id, rotated) is not None


def test_cli_app_sso_commands(sqlite_url, cli):
    from tests.conftest import counts

    assert cli("tenant", "create", "acme").exit_code == 0
    assert cli("app", "create", "CRM", "--code", "crm", "--owner", "acme").exit_code == 0
    before = counts(sqlite_url)
    bad = cli("app", "sso", "enable", "crm", "--redirect-uri", "http://crm.example.com/cb")
    assert bad.exit_code == 2 and "https" in bad.stderr
    assert counts(sqlite_url) == before
    made = cli.json("app", "sso", "enable", "crm", "--redirect-uri", REDIRECT)
    assert made["client_secret"].startswith("mnocs_") and made["redirect_uris"] == [REDIRECT]
    shown = cli.json("app", "sso", "show", "crm")
    assert shown["client_id"] == made["client_id"] and "client_secret" not in shown
    again = cli("app", "sso", "enable", "crm", "--redirect-uri", REDIRECT)
    assert again.exit_code == 1
    rotated = cli.json("app", "sso", "rotate-secret", "crm")
    assert rotated["client_secret"] != made["client_secret"]
    assert cli.json("app", "sso", "disable", "crm")["enabled"] is False
    assert cli.json("app", "sso", "show", "crm")["enabled"] is False
    keys = cli.json("sso", "keys", "list")
    assert keys == []
    assert {k["alg"] for k in cli.json("sso", "keys", "rotate")} == {"RS256", "ES256"}
    assert cli("sso", "keys", "prune").exit_code == 2  # off a terminal: --yes needed
    assert cli.json("sso", "keys", "prune", "--yes") == {"pruned": 0}


def test_housekeeper_prunes_retired_keys_and_expired_tokens(session):
    from mno.agents import housekeeper
    from mno.agents.base import TickContext
    from mno.sso import keys

    clock.set_now(clock.now())
    with session() as s:
        keys.ensure(s)
    with session() as s:
        keys.rotate(s)
    first = housekeeper.tick(TickContext(agent="housekeeper", db_url=None, batch_size=50))
    assert "sso" not in first.details  # the retired keys may still verify live tokens
    clock.advance(keys.publish_after_retire() + timedelta(seconds=1))
    later = housekeeper.tick(TickContext(agent="housekeeper", db_url=None, batch_size=50))
    assert later.details["sso"] == 2
    with session(write=False) as s:
        assert {r["status"] for r in keys.list_keys(s)} == {"active"}


def test_nex_app_instances_get_issuer_client_id_and_secret(session, mno_env):
    import yaml

    from mno import secrets as stored
    from mno import settings
    from mno.sso import clients
    from mno.tenancy import apps, tenants

    (mno_env / "config.yaml").write_text(
        yaml.safe_dump({"profiles": {"default": {"sso": {"issuer": "https://hub.example.com/"}}}})
    )
    settings.configure()
    with session() as s:
        tenants.create(s, "acme", name="Acme")
        apps.create(s, "Wiki", code="wiki", owner="acme", stack="nex", image="wiki:1", port=80)
        issued = clients.enable(s, "wiki", [REDIRECT])
    with session(write=False) as s:
        env = apps.get(s, "wiki").env
    assert env["OIDC_ISSUER"] == "https://hub.example.com"
    assert env["OIDC_CLIENT_ID"] == issued.client.client_id
    assert env["OIDC_CLIENT_SECRET"] == "secret:oidc-client-wiki"
    assert stored.resolve(env["OIDC_CLIENT_SECRET"]) == issued.secret
    with session() as s:
        clients.disable(s, "wiki")
    with session(write=False) as s:
        assert not set(apps.get(s, "wiki").env) & set(clients.NEX_ENV)
