"""mno doctor, mno version and mno config view against a real home, store and SMTP."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from mno import clock


def _by_name(cli: Any, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    import json

    result = cli("doctor", "--skip-hosts", *extra, "-o", "json")
    assert result.exit_code in (0, 1), (result.stdout, result.stderr)
    return result.exit_code, {c["name"]: c for c in json.loads(result.stdout)}


def test_fresh_home_warns_on_the_master_key_until_it_exists(cli: Any, mno_env: Path) -> None:
    code, checks = _by_name(cli)
    assert code == 0
    assert checks["master key"]["status"] == "warn"
    assert "mno secret import-master-key" in checks["master key"]["hint"]
    assert checks["store"]["status"] == "ok"
    assert checks["agents"]["status"] == "warn" and "mno agents run" in checks["agents"]["hint"]
    assert checks["smtp"]["status"] == "warn"
    assert cli("secret", "init-master-key").exit_code == 0
    code, checks = _by_name(cli)
    assert checks["master key"]["status"] == "ok"
    assert code == 0  # warnings only


def test_alive_agents_and_smtp_are_seen(
    cli: Any, sqlite_url: str, mno_env: Path, smtp_server: tuple[int, list[Any]]
) -> None:
    from mno.store.db import session_scope
    from mno.store.models.agents import Heartbeat

    port, _ = smtp_server
    (mno_env / "config.yaml").write_text(
        f"profiles:\n  default:\n    smtp: {{host: 127.0.0.1, port: {port}}}\n"
    )
    now = clock.now()
    with session_scope(sqlite_url) as s:
        s.add(
            Heartbeat(
                owner="h1:1:x",
                host="h1",
                pid=1,
                agents=["dispatcher"],
                started_at=now,
                last_beat=now,
            )
        )
    _, checks = _by_name(cli)
    assert checks["agents"]["status"] == "ok" and "dispatcher" in checks["agents"]["detail"]
    assert checks["smtp"]["status"] == "ok"

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    (mno_env / "config.yaml").write_text(
        f"profiles:\n  default:\n    smtp: {{host: 127.0.0.1, port: {closed}}}\n"
    )
    code, checks = _by_name(cli)
    assert code == 1 and checks["smtp"]["status"] == "fail"


def test_unreachable_store_fails_with_one_line(
    cli: Any, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    bad = pg_url.rsplit("/", 1)[0] + "/no_such_database_here"
    monkeypatch.setenv("MNO_DB_URL", bad)
    code, checks = _by_name(cli)
    assert code == 1
    assert checks["store"]["status"] == "fail"
    assert "no_such_database_here" in checks["store"]["detail"]
    assert "\n" not in checks["store"]["detail"]
    assert checks["agents"]["detail"].startswith("not checked")


def test_docker_host_is_probed(cli: Any, sqlite_url: str) -> None:
    import json

    result = cli("doctor", "-o", "json")
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    local = checks["docker host local"]
    assert local["status"] in ("ok", "fail")
    assert (local["status"] == "ok") == local["detail"].startswith("Docker ")


def test_config_view_names_each_source_and_hides_passwords(
    cli: Any, mno_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    rows = {r["setting"]: r for r in json.loads(cli("config", "view", "-o", "json").stdout)}
    assert rows["home"] == {
        "setting": "home",
        "value": str(mno_env),
        "source": "environment MNO_HOME",
    }
    assert rows["db_url"]["source"] == "default"
    assert rows["actor"]["source"] == "environment MNO_ACTOR"

    (mno_env / "config.yaml").write_text(
        "profiles:\n  default:\n    db_url: sqlite:////tmp/from-profile.db\n"
    )
    rows = {r["setting"]: r for r in json.loads(cli("config", "view", "-o", "json").stdout)}
    assert rows["db_url"]["value"] == "sqlite:////tmp/from-profile.db"
    assert rows["db_url"]["source"].startswith("profile default")

    monkeypatch.setenv("MNO_DB_URL", "postgresql+psycopg://u:hunter2@db.example/mno")
    out = cli("config", "view", "-o", "json").stdout
    assert "hunter2" not in out
    rows = {r["setting"]: r for r in json.loads(out)}
    assert rows["db_url"]["source"] == "environment MNO_DB_URL"
    out = cli("--db", "sqlite:////tmp/flag.db", "config", "view", "-o", "json").stdout
    rows = {r["setting"]: r for r in json.loads(out)}
    assert rows["db_url"] == {
        "setting": "db_url",
        "value": "sqlite:////tmp/flag.db",
        "source": "flag --db",
    }


def test_version_json_names_the_schema(cli: Any) -> None:
    from mno import __version__
    from mno.store import db

    data = cli.json("version")
    assert data["version"] == __version__
    assert data["schema"] == sorted(db.code_heads())
