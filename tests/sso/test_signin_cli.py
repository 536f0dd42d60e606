"""mno user password set / mno user mfa enable|disable."""

from __future__ import annotations

import pytest
from sqlmodel import select

from mno.sso import signin
from mno.store.models.signin import UserCredential
from tests.conftest import counts
from tests.sso.signin_support import PASSWORD, light_argon2


@pytest.fixture(autouse=True)
def _light(mno_env):
    light_argon2(mno_env)


def test_password_set_from_stdin_then_sign_in(cli, sqlite_url):
    assert cli("user", "create", "ada@example.com").exit_code == 0
    result = cli("user", "password", "set", "ada@example.com", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 0, result.stderr
    assert "password of ada@example.com set" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    from mno.store.db import session_scope

    with session_scope() as s:
        assert signin.sign_in(s, "ada@example.com", PASSWORD).status == "signed_in"
    data = cli.json("user", "password", "set", "ada@example.com", input=PASSWORD + "2\n")
    assert data == {"email": "ada@example.com", "password": "set"}
    shown = cli.json("user", "show", "ada@example.com")
    assert shown["password"] is True and shown["mfa"] is False
    assert "password_hash" not in str(shown) and "$argon2" not in str(shown)
    table = cli("user", "show", "ada@example.com").stdout
    assert "password" in table and "mfa" in table


def test_bad_password_exits_2_and_writes_nothing(cli, sqlite_url):
    cli("user", "create", "ada@example.com")
    before = counts(sqlite_url)
    result = cli("user", "password", "set", "ada@example.com", input="short\n")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "at least 10" in result.stderr
    assert counts(sqlite_url) == before
    missing = cli("user", "password", "set", "nobody@example.com", input=PASSWORD)
    assert missing.exit_code == 1 and "not found" in missing.stderr


def test_mfa_enable_shows_uri_and_qr_once_and_disable(cli, sqlite_url):
    cli("user", "create", "ada@example.com")
    fresh = cli.json("user", "show", "ada@example.com")
    assert fresh["password"] is False and fresh["mfa"] is False
    result = cli("user", "mfa", "enable", "ada@example.com")
    assert result.exit_code == 0, result.stderr
    uri = result.stdout.strip().splitlines()[-1]
    assert uri.startswith("otpauth://totp/mno:ada%40example.com?secret=")
    assert "█" in result.stdout or "▀" in result.stdout  # the QR code
    secret = uri.split("secret=")[1].split("&")[0]
    from mno.store.db import session_scope

    with session_scope() as s:
        row = s.exec(select(UserCredential)).one()
        assert row.totp_secret_enc and secret not in row.totp_secret_enc
    again = cli("user", "mfa", "enable", "ada@example.com")
    assert again.exit_code == 1 and "already has a second factor" in again.stderr
    show = cli("user", "show", "ada@example.com", "-o", "json")
    assert secret not in show.stdout
    shown = cli.json("user", "show", "ada@example.com")
    assert shown["password"] is False and shown["mfa"] is True
    refused = cli("user", "mfa", "disable", "ada@example.com")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert cli("user", "mfa", "disable", "ada@example.com", "--yes").exit_code == 0
    data = cli.json("user", "mfa", "enable", "ada@example.com")
    assert data["otpauth_uri"].startswith("otpauth://totp/") and secret not in data["otpauth_uri"]
