"""Conventions every command follows: help text, fast start, versions, errors, precedence."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
import typer

from mno import __version__, settings
from mno.cli import app


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if hasattr(command, "list_commands"):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _walk(command.get_command(ctx, name), (*path, name))


def test_every_command_has_help():
    root = typer.main.get_command(app)
    assert len(list(_walk(root))) > 40
    missing = [
        " ".join(path) or "mno"
        for path, command in _walk(root)
        if not (command.help or command.short_help or "").strip()
    ]
    assert missing == []
    params_without_help = [
        f"{' '.join(path)} {param.name}"
        for path, command in _walk(root)
        for param in command.params
        if isinstance(param, click.Option)
        and not (param.help or "").strip()
        and param.name not in ("help", "install_completion", "show_completion")
    ]
    assert params_without_help == []


def test_help_imports_no_heavy_modules():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mno", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    heavy = {"sqlalchemy", "alembic", "docker", "httpx", "apscheduler", "sqlmodel"}
    assert heavy & {name.split(".")[0] for name in imported} == set()


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"mno {__version__}"


def test_no_color_output_has_no_escape_codes(cli, sqlite_url):
    cli("tenant", "create", "acme")
    result = cli("tenant", "list")
    assert result.exit_code == 0 and "\x1b[" not in result.stdout and "acme" in result.stdout


def test_db_url_precedence(mno_env, monkeypatch, tmp_path):
    (mno_env / "config.yaml").write_text(
        "current: default\nprofiles:\n  default: {db_url: 'sqlite:///from-profile.db'}\n"
        "  other: {db_url: 'sqlite:///from-other.db'}\n"
    )
    assert settings.db_url() == "sqlite:///from-profile.db"
    monkeypatch.setenv("MNO_PROFILE", "other")
    assert settings.db_url() == "sqlite:///from-other.db"
    monkeypatch.setenv("MNO_DB_URL", "sqlite:///from-env.db")
    assert settings.db_url() == "sqlite:///from-env.db"
    settings.configure(db_url="sqlite:///from-flag.db")
    assert settings.db_url() == "sqlite:///from-flag.db"
    settings.configure(profile="missing")
    monkeypatch.delenv("MNO_DB_URL")
    with pytest.raises(Exception, match="profile 'missing'"):
        settings.db_url()


def test_default_store_under_home(mno_env):
    assert settings.db_url() == f"sqlite:///{mno_env / 'mno.db'}"


def test_schema_behind_or_ahead_is_refused(cli, sqlite_url):
    import sqlalchemy as sa

    from mno.store import db

    assert cli("tenant", "list").exit_code == 0  # creates and upgrades the store
    engine = db.get_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('ffff')"))
    db._checked.clear()
    ahead = cli("tenant", "list")
    assert ahead.exit_code == 3 and "ahead of this mno" in ahead.stderr
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM alembic_version"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('0001')"))
    db._checked.clear()
    if db.code_heads() != {"0001"}:
        behind = cli("tenant", "list")
        assert behind.exit_code == 3 and "mno db upgrade" in behind.stderr


def test_postgres_store_needs_upgrade(cli, pg_database, monkeypatch):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from tests.conftest import PG_SERVER_URL

    name = "mno_test_empty_" + pg_database.rsplit("_", 1)[-1]
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    try:
        monkeypatch.setenv("MNO_DB_URL", url)
        refused = cli("tenant", "list")
        assert refused.exit_code == 3 and "mno db upgrade" in refused.stderr
        assert cli("db", "upgrade").exit_code == 0
        assert cli("tenant", "list").exit_code == 0
        current = cli.json("db", "current")
        assert current["state"] == "up to date"
    finally:
        from mno.store import db

        engine = db._engines.pop(db.normalize_url(url), None)
        if engine is not None:
            engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_unreachable_store_exits_3(cli, monkeypatch):
    monkeypatch.setenv("MNO_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    result = cli("tenant", "list")
    assert result.exit_code == 3
    assert result.stderr.startswith("Error: cannot reach the store")
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_adds_traceback(cli, monkeypatch, sqlite_url):
    monkeypatch.setenv("MNO_DEBUG", "1")
    result = cli("tenant", "show", "nope")
    assert result.exit_code == 1 and "Traceback" in result.stderr


def test_audit_and_events_cli(cli, sqlite_url):
    cli("tenant", "create", "acme")
    cli("tenant", "provision", "acme")
    entries = cli.json("audit", "list", "--target", "acme")
    assert [e["action"] for e in entries] == [
        "tenant.active",
        "tenant.provisioning",
        "tenant.create",
    ]
    assert all(e["actor"] == "tester" for e in entries)
    assert entries[-1]["diff"]["after"]["key"] == "acme"
    only = cli.json("audit", "list", "--action", "tenant.create", "--since", "1h")
    assert {e["target"] for e in only} == {"system", "acme"}
    assert cli.json("audit", "list", "--since", "2999-01-01") == []
    events = cli.json("events", "list", "--type", "tenant.*", "--tenant", "acme")
    assert [e["type"] for e in events] == [
        "tenant.status_changed",
        "tenant.status_changed",
        "tenant.created",
    ]
    seqs = [e["seq"] for e in cli.json("events", "list", "--after", "0")]
    assert seqs == sorted(seqs)
    types = {t["type"] for t in cli.json("events", "types")}
    assert {"tenant.created", "lead.converted", "app.created"} <= types
    assert cli("audit", "list", "--since", "yesterday-ish").exit_code == 2


def test_models_and_migrations_agree(store_url):
    """Autogenerate finds no difference between the models and the migrated store."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    from mno.store.models import load_all

    load_all()
    from mno.store import db

    engine = db.get_engine(store_url)
    db.check_schema(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_code_heads_match_alembic():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from mno.store import db

    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    assert set(ScriptDirectory.from_config(cfg).get_heads()) == db.code_heads()
