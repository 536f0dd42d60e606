"""The access commands end to end through the CLI (SQLite)."""

from __future__ import annotations

import uuid

from tests.conftest import counts


def test_user_member_team_and_check(cli, sqlite_url):
    assert cli("tenant", "create", "acme").exit_code == 0
    assert cli("member", "add", "acme", "own@acme.io", "--role", "super_admin").exit_code == 0
    assert cli("member", "add", "acme", "adm@acme.io", "--role", "admin").exit_code == 0
    assert cli("member", "add", "acme", "bob@acme.io").exit_code == 0
    before = counts(sqlite_url)
    r = cli("member", "add", "acme", "eve@acme.io", "--role", "super_admin", "--as", "adm@acme.io")
    assert r.exit_code == 1 and "cannot grant super_admin" in r.stderr
    r = cli("member", "set-role", "acme", "own@acme.io", "member")
    assert r.exit_code == 1 and "last super_admin" in r.stderr
    r = cli("member", "add", "acme", "x@acme.io", "--role", "owner")
    assert r.exit_code == 2
    assert counts(sqlite_url) == before
    listed = cli.json("member", "list", "acme")
    assert [(m["email"], m["role"]) for m in listed] == [
        ("adm@acme.io", "admin"),
        ("bob@acme.io", "member"),
        ("own@acme.io", "super_admin"),
    ]
    inst = str(uuid.uuid4())
    assert cli("team", "create", "acme", "sales", "--as", "adm@acme.io").exit_code == 0
    assert cli("team", "add-member", "acme", "sales", "bob@acme.io").exit_code == 0
    assert cli("team", "add-instance", "acme", "sales", inst).exit_code == 0
    teams = cli.json("team", "list", "acme")
    assert teams == [
        {"tenant": "acme", "name": "sales", "members": ["bob@acme.io"], "instances": [inst]}
    ]
    r = cli("access", "check", "bob@acme.io", "acme", "open", "--instance", inst)
    assert r.exit_code == 0 and r.stdout.startswith("allowed: team sales")
    r = cli.json("access", "check", "bob@acme.io", "acme", "open", "--instance", str(uuid.uuid4()))
    assert r["allowed"] is False
    r = cli("access", "check", "adm@acme.io", "acme", "delete_tenant")
    assert r.stdout.startswith("denied:")
    assert cli("user", "disable", "bob@acme.io").exit_code == 0
    assert cli.json("user", "show", "bob@acme.io")["status"] == "disabled"
    assert [u["email"] for u in cli.json("user", "list", "--tenant", "acme")] == [
        "adm@acme.io",
        "bob@acme.io",
        "own@acme.io",
    ]


def test_invite_commands(cli, sqlite_url):
    cli("tenant", "create", "acme")
    cli("member", "add", "acme", "own@acme.io", "--role", "super_admin")
    issued = cli.json("invite", "create", "acme", "new@acme.io", "--role", "admin")
    assert issued["status"] == "pending" and issued["token"].startswith("mnoinv_")
    listed = cli.json("invite", "list", "acme")
    assert issued["token"] not in str(listed) and listed[0]["status"] == "pending"
    assert cli.json("invite", "accept", issued["token"])["status"] == "accepted"
    r = cli("invite", "accept", issued["token"])
    assert r.exit_code == 1 and "accepted" in r.stderr
    staged = cli.json("invite", "create", "acme", "st@acme.io", "--stage")
    assert staged["token"] is None
    assert cli.json("invite", "revoke", staged["id"])["status"] == "revoked"


def test_tokens_and_app_keys_are_shown_once(cli, sqlite_url):
    cli("tenant", "create", "acme")
    cli("user", "create", "bob@acme.io")
    tok = cli.json("user", "token", "create", "bob@acme.io", "--ttl", "1h")
    assert tok["token"].startswith("mnout_")
    shown = cli("user", "show", "bob@acme.io", "-o", "json").stdout
    assert tok["token"] not in shown and tok["id"] in shown
    assert cli.json("user", "token", "revoke", tok["id"])["status"] == "revoked"
    cli("app", "create", "CRM", "--code", "crm", "--owner", "acme")
    key = cli.json("app", "keys", "rotate", "crm")
    assert key["secret"].startswith("mnosk_") and key["status"] == "active"
    again = cli.json("app", "keys", "rotate", "crm", "--grace", "1h")
    listed = cli("app", "keys", "list", "crm", "-o", "json").stdout
    assert key["secret"] not in listed and again["secret"] not in listed
    assert '"retiring"' in listed
    assert cli("serve", "--help").exit_code == 0


def test_invite_token_is_mailed_but_never_in_events(cli, sqlite_url, mno_env, smtp_server):
    port, received = smtp_server
    smtp = f"profiles:\n  default:\n    smtp: {{host: 127.0.0.1, port: {port}}}\n"
    (mno_env / "config.yaml").write_text(smtp + "    hub: {url: 'https://hub.example.com/'}\n")
    cli("tenant", "create", "acme")
    issued = cli.json("invite", "create", "acme", "new@acme.io")
    assert issued["mailed"] is True
    assert len(received) == 1 and received[0]["To"] == "new@acme.io"
    body = received[0].get_payload(decode=True).decode()
    # the hub's page of the invitation, at the hub's public URL, and the CLI alternative
    assert f"Open https://hub.example.com/invites/{issued['token']} to set your password" in body
    assert f"mno invite accept {issued['token']}" in body
    (mno_env / "config.yaml").write_text(smtp)  # no public URL: the path on the hub
    other = cli.json("invite", "create", "acme", "other@acme.io")
    relative = received[1].get_payload(decode=True).decode()
    assert f"Open /invites/{other['token']} to set" in relative
    assert "https://" not in relative
    events = cli("events", "list", "-o", "json").stdout
    assert "invite.created" in events and "new@acme.io" in events
    assert issued["token"] not in events
    from mno.access.secrets import digest

    assert digest(issued["token"]) not in events
