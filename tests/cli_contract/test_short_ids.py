"""Short ids: list tables show 8 hex digits of each id, and every command that takes an id
takes that short form (or any unique prefix of 4 or more digits); ambiguous is exit 2.

Also the root help's panels and `mno plan` as GitOps' planner only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from mno.store.models.tenancy import Tenant

ROOT = Path(__file__).resolve().parents[2]


def _table(result: Any) -> list[dict[str, str]]:
    assert result.exit_code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    names = header.split("\t")
    return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]


def test_a_listed_short_id_works_in_show(store_url: str, cli: Any) -> None:
    assert cli("tenant", "create", "acme", "--country", "FR").exit_code == 0
    made = [
        cli.json("charge", "add", "acme", "--amount", a, "--currency", "USD", "--description", d)
        for a, d in (("10.00", "x"), ("12.50", "y"))
    ]
    rows = _table(cli("charge", "list"))
    assert sorted(r["ID"] for r in rows) == sorted(c["id"][:8] for c in made)
    for row in rows:
        shown = cli.json("charge", "show", row["ID"])
        assert shown["id"].startswith(row["ID"]) and len(shown["id"]) == 36
        assert shown["description"] == row["DESCRIPTION"]
    # -o wide, json and yaml keep the whole id
    wide = _table(cli("charge", "list", "-o", "wide"))
    assert sorted(r["ID"] for r in wide) == sorted(c["id"] for c in made)
    assert sorted(c["id"] for c in cli.json("charge", "list")) == sorted(c["id"] for c in made)
    yaml_out = cli("charge", "list", "-o", "yaml").stdout
    assert all(f"id: {c['id']}" in yaml_out for c in made)
    # a command that changes the object takes the short id too
    short = made[0]["id"][:6]
    cancelled = cli.json("charge", "cancel", short)
    assert cancelled["id"] == made[0]["id"] and cancelled["status"] == "cancelled"


def test_ids_in_other_id_columns_are_short_too(store_url: str, cli: Any) -> None:
    from mno.cli import output

    assert output.short_cell("tenant_id", "abcd1234-0000-4000-8000-000000000001") == "abcd1234"
    assert output.short_cell("id", "abcd1234-0000-4000-8000-000000000001") == "abcd1234"
    # not an id column, or not a UUID: shown as is
    assert output.short_cell("note", "abcd1234-0000-4000-8000-000000000001").startswith(
        "abcd1234-0000"
    )
    assert output.short_cell("external_id", "crm-42") == "crm-42"
    assert output.short_cell("id", None) == "-"


def test_time_ordered_ids_made_together_are_shown_long_enough_to_tell_apart() -> None:
    from mno.cli import output
    from mno.store.bulk import uuids

    ids = [str(u) for u in uuids(3)]  # one millisecond: the first 12 digits are the same
    assert len({i[:8] for i in ids}) == 1
    rows = [{"id": i, "tenant_id": ids[0], "name": "x"} for i in ids]
    widths = output.short_widths(rows, ["id", "tenant_id", "name"])
    assert widths["tenant_id"] == 8  # one id, however often it repeats
    shown = [output.short_cell("id", i, widths["id"]) for i in ids]
    assert len(set(shown)) == 3 and not shown[0].endswith("-")
    assert all(i.startswith(s) for i, s in zip(ids, shown, strict=True))
    assert widths["id"] < 36
    apart = [{"id": "abcd1234-0000-4000-8000-000000000001"}, {"id": "abce1234-0000-4000-8000-0"}]
    assert output.short_widths(apart, ["id"]) == {"id": 8}


def test_prefixes_ambiguous_and_unknown(store_url: str, cli: Any) -> None:
    from mno.store.db import session_scope

    ids = ["abcd1234-0000-4000-8000-000000000001", "abcd5678-0000-4000-8000-000000000002"]
    with session_scope(store_url) as s:
        for n, tid in enumerate(ids):
            s.add(Tenant(id=uuid.UUID(tid), key=f"t{n}", name=f"t{n}"))
    assert cli.json("tenant", "show", "abcd5")["key"] == "t1"
    ambiguous = cli("tenant", "show", "abcd")
    assert ambiguous.exit_code == 2
    assert ambiguous.stderr == (
        f"Error: ambiguous tenant id 'abcd': it could be {ids[0]}, {ids[1]} (give more of the id)\n"
    )
    unknown = cli("charge", "show", "0123")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: charge 0123 not found (see `mno charge list`)\n"
    too_short = cli("charge", "show", "012")
    assert too_short.exit_code == 2 and "invalid charge id '012'" in too_short.stderr


def test_webhook_endpoint_and_lead_by_prefix(store_url: str, cli: Any) -> None:
    e = cli.json("webhook", "endpoint", "add", "http://127.0.0.1:9/hook", "--events", "tenant.*")
    assert cli.json("webhook", "endpoint", "show", e["id"][:8])["id"] == e["id"]
    row = _table(cli("webhook", "endpoint", "list"))[0]
    assert cli.json("webhook", "endpoint", "show", row["ID"])["id"] == e["id"]


PANELS = ["Platform", "Billing", "Nex", "Data", "Access", "Operations"]


def _plain_help() -> subprocess.CompletedProcess[str]:
    """`python -X importtime -m mno --help` as a user runs it (plain help, no rich)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("TYPER_USE_RICH", None)
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mno", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )


def test_root_help_groups_commands_in_panels() -> None:
    from mno.cli import COMMANDS, GROUPS
    from mno.cli import PANELS as panels

    done = _plain_help()
    out = done.stdout
    headings = [line[:-1] for line in out.splitlines() if line.endswith(":") and line[0] != " "]
    assert headings == ["Options", *PANELS]
    assert list(panels) == PANELS
    listed = [n for names in panels.values() for n in names]
    assert sorted(listed) == sorted(n for n, _, _ in GROUPS + COMMANDS)
    assert len(listed) == len(set(listed))
    for panel, names in panels.items():
        block = out.split(f"\n{panel}:\n")[1].split("\n\n")[0]
        assert [line.split()[0] for line in block.splitlines()] == list(names)
    # listing them imported neither the store nor rich
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert "typer" in imported
    assert not imported & {"sqlalchemy", "sqlmodel", "rich"}


def test_rich_help_shows_the_same_panels(cli: Any) -> None:
    out = cli("--help").stdout
    if "╭─" not in out:  # typer imported with TYPER_USE_RICH=0: the plain layout
        titles = [line[:-1] for line in out.splitlines() if line in {f"{p}:" for p in PANELS}]
    else:
        titles = [line.split("─ ")[1].split(" ─")[0] for line in out.splitlines() if "╭─" in line]
        titles = [t for t in titles if t != "Options"]
    assert titles == PANELS


def test_plan_is_gitops_only(store_url: str, cli: Any, tmp_path: Path) -> None:
    help_text = cli("plan", "--help").stdout
    for option in ("--filename", "--out", "--prune", "--source"):
        assert option in help_text
    for word in ("Commands", "create", "--currency", "--install-completion"):
        assert word not in help_text
    stray = cli("plan", "create", "basic")
    assert stray.exit_code == 2
    assert "unexpected extra argument" in stray.stderr
    made = cli("billing", "plan", "create", "basic", "--currency", "USD", "--amount", "9.99")
    assert made.exit_code == 0, made.stderr
    assert [p["code"] for p in cli.json("billing", "plan", "list")] == ["basic"]
    # the GitOps planner still writes a plan file
    docs = tmp_path / "t.yaml"
    docs.write_text("kind: Tenant\nmetadata:\n  name: acme\nspec:\n  country: FR\n")
    out = tmp_path / "plan.json"
    result = cli("plan", "-f", docs, "--out", out, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(out.read_text())["changes"]


def test_every_kind_of_id_takes_its_short_form(store_url: str, cli: Any) -> None:
    """Create one object of each kind, then name it by the 8 digits a table shows."""
    assert cli("tenant", "create", "acme", "--country", "FR").exit_code == 0
    assert (
        cli("billing", "plan", "create", "basic", "--currency", "EUR", "--amount", "9.99")
    ).exit_code == 0
    user = cli.json("user", "create", "ann@example.com")
    assert cli.json("user", "show", user["id"][:8])["email"] == "ann@example.com"
    token = cli.json("user", "token", "create", "ann@example.com")
    revoked = cli.json("user", "token", "revoke", token["id"][:8])
    assert revoked["id"] == token["id"] and revoked["status"] == "revoked"
    invite = cli.json("invite", "create", "acme", "bob@example.com", "--stage")
    sent = cli.json("invite", "send", invite["id"][:8])
    assert sent["id"] == invite["id"] and sent["status"] == "pending"
    sub = cli.json("subscription", "create", "acme", "basic", "--start", "2026-09-01T00:00:00Z")
    assert cli.json("subscription", "show", sub["id"][:8])["id"] == sub["id"]
    inv = cli.json("invoice", "create", "acme", "--line", "work:1:100.00")
    assert cli.json("invoice", "show", inv["id"][:8])["id"] == inv["id"]
    listed = _table(cli("invoice", "list"))
    assert [r["ID"] for r in listed] == [inv["id"][:8]]
    tenant_id = cli.json("tenant", "show", "acme")["id"]
    assert cli.json("tenant", "show", tenant_id[:8])["key"] == "acme"


def test_flags_show_no_python_type(cli: Any) -> None:
    for args in (("--help",), ("tenant", "create", "--help"), ("billing", "plan", "create", "-h")):
        out = cli(*args).stdout
        flags = [line for line in out.splitlines() if "--no-headers" in line or "--if-not" in line]
        flags += [line for line in out.splitlines() if "--inclusive" in line]
        assert flags and not any("<bool>" in line for line in flags), args
