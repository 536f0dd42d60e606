"""Confirmation of destructive commands on a terminal, and --dry-run on bulk mutations:
each dry run shows what would change and leaves every row of the store as it was (on SQLite
and on PostgreSQL, where usage import writes with COPY)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.billing.conftest import CATALOGUE
from tests.conftest import counts


def _table(url: str, name: str) -> list[tuple[Any, ...]]:
    """Every row of one table, in a stable order."""
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {name}")).all()  # noqa: S608 - test names
    return sorted((tuple(r) for r in rows), key=repr)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard input is a terminal: destructive commands ask."""
    monkeypatch.setattr("mno.cli.params.stdin_is_tty", lambda: True)


def test_on_a_terminal_the_operator_is_asked(cli: Any, sqlite_url: str, terminal: None) -> None:
    assert cli("tenant", "create", "acme").exit_code == 0
    before = counts(sqlite_url)
    no = cli("tenant", "delete", "acme", input="n\n")
    assert no.exit_code == 1
    assert "Delete tenant acme? [y/N]" in no.stderr
    assert "Error: delete tenant acme: not confirmed, nothing was changed" in no.stderr
    assert "acme" not in no.stdout  # the runner echoes the answer; nothing else
    assert counts(sqlite_url) == before
    # the default (enter) is no
    assert cli("tenant", "delete", "acme", input="\n").exit_code == 1
    assert cli.json("tenant", "show", "acme")["key"] == "acme"
    yes = cli("tenant", "delete", "acme", input="y\n")
    assert yes.exit_code == 0 and yes.stderr.endswith("✓ tenant acme deleted\n")
    assert cli("tenant", "show", "acme").exit_code == 1


def test_yes_skips_the_question(cli: Any, sqlite_url: str, terminal: None) -> None:
    assert cli("tenant", "create", "acme").exit_code == 0
    result = cli("tenant", "delete", "acme", "-y")
    assert result.exit_code == 0 and "[y/N]" not in result.stderr


def test_off_a_terminal_without_yes_nothing_is_written(cli: Any, sqlite_url: str) -> None:
    assert cli("tenant", "create", "acme").exit_code == 0
    before = counts(sqlite_url)
    result = cli("tenant", "offboard", "acme")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: offboard tenant acme: not confirmed (pass --yes to confirm off a terminal)\n"
    )
    assert counts(sqlite_url) == before
    assert cli.json("tenant", "show", "acme")["status"] == "pending_provision"


def test_init_master_key_asks_only_with_force(cli: Any, sqlite_url: str) -> None:
    assert cli("secret", "init-master-key").exit_code == 0
    refused = cli("secret", "init-master-key", "--force")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert cli("secret", "init-master-key", "--force", "--yes").exit_code == 0


def test_offboard_dry_run_writes_nothing(cli: Any, store_url: str) -> None:
    assert cli("tenant", "create", "acme").exit_code == 0
    assert cli("tenant", "provision", "acme").exit_code == 0
    assert cli.json("tenant", "show", "acme")["status"] == "active"
    before = (counts(store_url), _table(store_url, "tenant"))
    dry = cli("tenant", "offboard", "acme", "--dry-run")  # no --yes needed: nothing changes
    assert dry.exit_code == 0, dry.stderr
    assert "dry run: tenant acme would be offboarded" in dry.stderr
    assert "nothing was written" in dry.stderr
    data = cli.json("tenant", "offboard", "acme", "--dry-run")
    assert data == {"tenant": "acme", "status": "offboarded", "terminating": [], "dry_run": True}
    assert (counts(store_url), _table(store_url, "tenant")) == before
    assert cli.json("tenant", "offboard", "acme", "--yes")["status"] == "offboarded"


def test_usage_import_dry_run_writes_nothing(cli: Any, store_url: str, tmp_path: Path) -> None:
    metric = tmp_path / "m.yaml"
    metric.write_text(CATALOGUE.split("---")[0])
    assert cli("metric", "create", "-f", metric).exit_code == 0
    assert cli("tenant", "create", "acme").exit_code == 0
    rows = tmp_path / "u.csv"
    rows.write_text("tenant,metric,quantity,at\n" + "acme,api_calls,2,2026-10-01T00:00:00Z\n" * 3)
    before = (counts(store_url), _table(store_url, "billing_usage_event"))
    dry = cli.json("usage", "import", rows, "--dry-run")
    assert dry == {"imported": 0, "would_import": 3, "dry_run": True}
    table = cli("usage", "import", rows, "--dry-run")
    assert table.stderr.endswith("dry run: 3 usage events would be imported; nothing was written\n")
    assert (counts(store_url), _table(store_url, "billing_usage_event")) == before
    assert cli.json("usage", "import", rows) == {"imported": 3}
    assert len(_table(store_url, "billing_usage_event")) == 3


def test_webhook_replay_dry_run_writes_nothing(
    cli: Any, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    from mno.store import outbox
    from mno.store.db import session_scope

    monkeypatch.setenv("MNO_MASTER_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("MNO_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8")
    # nothing listens on port 9: every attempt fails and the deliveries wait for a retry
    e = cli.json("webhook", "endpoint", "add", "http://127.0.0.1:9/hook", "--events", "tenant.*")
    with session_scope(store_url) as s:
        outbox.emit_many(s, [("tenant.updated", {"i": i}, None) for i in range(2)])
    assert cli("agents", "tick", "dispatcher").exit_code == 0
    before = (counts(store_url), _table(store_url, "webhook_delivery"))
    assert len(before[1]) == 2
    replay = ("webhook", "replay", "--endpoint", e["id"], "--status", "failed")
    dry = cli(*replay, "--dry-run")
    assert (dry.exit_code, dry.stdout) == (0, "2\n"), dry.stderr
    assert "dry run: 2 deliveries would be re-queued; nothing was written" in dry.stderr
    assert cli.json(*replay, "--dry-run") == {"requeued": 2, "dry_run": True}
    assert (counts(store_url), _table(store_url, "webhook_delivery")) == before
    # the real replay changes the rows the dry run left alone
    assert cli.json(*replay, "--yes") == {"requeued": 2}
    assert _table(store_url, "webhook_delivery") != before[1]


def _tenant_doc(key: str) -> str:
    return (
        f"apiVersion: mno.io/v1\nkind: Tenant\nmetadata: {{name: {key}}}\nspec: {{name: {key}}}\n"
    )


def test_gitops_prune_dry_run_writes_nothing(cli: Any, store_url: str, tmp_path: Path) -> None:
    docs = tmp_path / "tenants.yaml"
    docs.write_text(_tenant_doc("acme") + "---\n" + _tenant_doc("globex"))
    applied = cli("apply", "-f", docs, "--source", "ci")
    assert applied.exit_code == 0, applied.stderr
    docs.write_text(_tenant_doc("acme"))
    before = (counts(store_url), _table(store_url, "tenant"))
    prune = ("apply", "-f", docs, "--source", "ci", "--prune", "--allow-offboard")
    dry = cli(*prune, "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "Tenant/globex" in dry.stdout + dry.stderr
    assert "dry run: nothing was written" in dry.stderr
    assert (counts(store_url), _table(store_url, "tenant")) == before
    assert cli(*prune).exit_code == 0
    assert _table(store_url, "tenant") != before[1]
