"""Secrets: keyring and file fallback, precedence, the master key, and no leaks."""

from __future__ import annotations

import os
import stat

import pytest

from mno import crypto, secrets
from mno.errors import BadInput, Conflict, NotFound, Unavailable

VALUE = "s3cr3t-value-that-must-not-leak"


@pytest.fixture
def no_keyring(monkeypatch):
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setattr(secrets, "_warned", False)
    from tests.conftest import _reset_keyring

    _reset_keyring()


def test_keyring_backend_roundtrip(tmp_path):
    assert secrets.backend_name().startswith("keyring (keyrings.alt.file")
    secrets.set("API_TOKEN", VALUE)
    assert secrets.get("API_TOKEN") == VALUE
    assert secrets.resolve("secret:API_TOKEN") == VALUE
    assert secrets.resolve("plain") == "plain"
    assert [r["name"] for r in secrets.list_names()] == ["API_TOKEN"]
    # the value sits in the keyring's own file, not in MNO_HOME
    home = os.environ["MNO_HOME"]
    for root, _, files in os.walk(home):
        for f in files:
            assert VALUE not in open(os.path.join(root, f), errors="ignore").read()
    secrets.delete("API_TOKEN")
    assert secrets.get("API_TOKEN") is None
    with pytest.raises(NotFound):
        secrets.delete("API_TOKEN")


def test_environment_overrides(monkeypatch):
    secrets.set("db.password", "from-keyring")
    monkeypatch.setenv("MNO_SECRET_DB_PASSWORD", "from-env")
    assert secrets.get("db.password") == "from-env"
    assert secrets.list_names() == [
        {"name": "db.password", "source": "environment (overrides keyring)"}
    ]
    with pytest.raises(NotFound, match="mno secret set MISSING"):
        secrets.require("MISSING")


def test_headless_file_fallback(no_keyring, capfd):
    assert secrets.backend_name().startswith("file (")
    secrets.set("SMTP_PASSWORD", VALUE)
    secrets.set("OTHER", "x")
    err = capfd.readouterr().err
    assert err.count("no keyring backend") == 1  # warned once
    path = secrets._fallback_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.get("SMTP_PASSWORD") == VALUE
    assert [r["name"] for r in secrets.list_names()] == ["OTHER", "SMTP_PASSWORD"]


def test_require_keyring_refuses(no_keyring, mno_env):
    (mno_env / "config.yaml").write_text(
        "profiles:\n  default:\n    secrets: {require_keyring: true}\n"
    )
    with pytest.raises(Unavailable, match="PYTHON_KEYRING_BACKEND"):
        secrets.set("X", "y")


def test_bad_names():
    with pytest.raises(BadInput):
        secrets.set("bad name", "x")
    with pytest.raises(BadInput):
        secrets.set("OK", "")


def test_master_key_encrypts(monkeypatch):
    crypto.init_master_key()
    with pytest.raises(Conflict):
        crypto.init_master_key()
    token = crypto.encrypt(VALUE)
    assert VALUE not in token and crypto.decrypt(token) == VALUE
    # another host with another key cannot read it
    monkeypatch.setenv("MNO_MASTER_KEY", crypto.generate_key())
    with pytest.raises(Exception, match="same master key"):
        crypto.decrypt(token)


def test_cli_never_prints_values(cli, sqlite_url):
    set_ = cli("secret", "set", "API_TOKEN", "--from-stdin", input=VALUE + "\n")
    assert set_.exit_code == 0, set_.stderr
    listed = cli("secret", "list", "-o", "json")
    assert listed.exit_code == 0 and VALUE not in listed.stdout + listed.stderr
    assert '"API_TOKEN"' in listed.stdout
    backend = cli.json("secret", "backend")
    assert backend["backend"].startswith("keyring")
    # a command that reads the secret (an SMTP password reference) writes the store, which
    # must not contain the value either
    assert cli("tenant", "create", "acme").exit_code == 0
    store = sqlite_url.removeprefix("sqlite:///")
    for path in (store, store + "-wal"):
        if os.path.exists(path):
            assert VALUE.encode() not in open(path, "rb").read()
    assert cli("secret", "delete", "NOPE", "--yes").exit_code == 1
    assert cli("secret", "set", "bad name", "--from-stdin", input="x").exit_code == 2


def test_the_keyring_warning_is_said_once_per_host(no_keyring, capfd):
    """A new process (the module's flag starts over) is not warned again."""
    secrets.set("A", "1")
    assert capfd.readouterr().err.count("no keyring backend") == 1
    secrets._warned = False  # as in the next `mno` command
    secrets.set("B", "2")
    assert secrets.get("A") == "1"
    assert "no keyring backend" not in capfd.readouterr().err


def test_the_master_key_is_created_on_first_need(cli, sqlite_url, capfd):
    """Sealing a value on a fresh host creates the key and says how to copy it; opening a
    value without the key says how to get it and never makes one."""
    assert crypto.current_key() is None
    with pytest.raises(NotFound, match="no master key"):
        crypto.decrypt("gAAAAAB-not-a-token")
    assert crypto.current_key() is None  # opening creates nothing

    token = crypto.encrypt(VALUE)
    err = capfd.readouterr().err
    assert "Created the master key" in err and "export-master-key" in err
    key = crypto.current_key()
    assert key and crypto.decrypt(token) == VALUE
    crypto.encrypt("again")
    assert "Created" not in capfd.readouterr().err and crypto.current_key() == key

    # off a terminal export needs --yes; with it, the key alone is printed
    refused = cli("secret", "export-master-key")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    exported = cli("secret", "export-master-key", "--yes")
    assert exported.exit_code == 0 and exported.stdout.strip() == key

    # another host: import it from a pipe and open what the first host sealed
    secrets.delete(crypto.MASTER_KEY_NAME)
    crypto._cache.clear()
    with pytest.raises(NotFound, match="import-master-key"):
        crypto.decrypt(token)
    assert cli("secret", "import-master-key", input="not a key\n").exit_code == 2
    imported = cli.json("secret", "import-master-key", input=exported.stdout)
    assert imported["imported"] is True
    assert crypto.decrypt(token) == VALUE
    assert cli.json("secret", "import-master-key", input=key)["imported"] is False
    other = crypto.generate_key()
    clash = cli("secret", "import-master-key", input=other)
    assert clash.exit_code == 1 and "another master key" in clash.stderr
    assert crypto.current_key() == key
    replaced = cli("secret", "import-master-key", "--force", "--yes", input=other)
    assert replaced.exit_code == 0 and crypto.current_key() == other
