"""The CLI contract, checked over every command of the typer app.

- ``-h`` works on every group and command, and names no Python types (``<list[str]>``).
- Every command that prints data takes ``-o table|json|yaml``; those that can run without
  arguments print valid JSON with ``-o json``, on a fresh store and on a populated one.
- Every destructive command takes ``--yes`` and, off a terminal without it, refuses with
  exit 2 and a hint, writing nothing.
- Every list command takes ``--limit`` (default 100), ``--after CURSOR`` and ``--all``.

Each test prints how many commands it checked (``pytest -s`` shows the lines).
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa

from tests.cli_contract.walk import (
    DESTRUCTIVE_WITH,
    Command,
    dummy_args,
    everything,
    is_destructive,
    is_list,
    leaves,
)
from tests.conftest import counts

# Python types in help: generics (<list[str]>, <dict[str, Any]>) and class names (<FileText>).
PYTHON_TYPE = re.compile(r"<[^<>\n]*\[[^<>\n]*\]>|<[A-Z][A-Za-z]+>|<class '")

# Commands that print no data, or data in a fixed format of their own.
NO_OUTPUT_FORMAT = {
    ("export",): "writes YAML documents (stdout or --out DIR)",
    ("schema",): "prints a JSON Schema",
    ("serve",): "runs the API server",
    ("instance", "logs"): "streams the container's output",
    ("instance", "exec"): "passes the command's own output through",
    ("webhook", "listen"): "runs a local receiver",
    ("report", "html"): "writes an HTML file",
    ("agents", "run"): "runs the daemons",
    ("edge", "run"): "runs Caddy in the foreground",
    ("agents", "systemd"): "prints a systemd unit",
    ("invoice", "export"): "writes JSON, CSV, HTML or PDF chosen by --format",
}


def test_help_works_everywhere_without_python_types(cli: Any) -> None:
    checked = 0
    for c in everything():
        result = cli(*c.path, "-h")
        assert result.exit_code == 0, (c.name, result.stdout, result.stderr)
        assert "Usage:" in result.stdout, c.name
        found = PYTHON_TYPE.findall(result.stdout)
        assert not found, (c.name, found)
        checked += 1
    print(f"\n-h: {checked} groups and commands (the root included), no Python types")
    assert checked == len(everything()) > 200


def _prints_data(c: Command) -> bool:
    return c.path not in NO_OUTPUT_FORMAT


def test_every_command_that_prints_data_takes_output(cli: Any) -> None:
    missing = [c.name for c in leaves() if _prints_data(c) and not c.output_is_format()]
    assert not missing, f"no -o table|json|yaml: {missing}"
    stale = [" ".join(p) for p in NO_OUTPUT_FORMAT if not any(c.path == p for c in leaves())]
    assert not stale, stale
    with_o = sum(c.output_is_format() for c in leaves())
    print(
        f"\n-o: {with_o} of {len(leaves())} commands take -o table|json|yaml; "
        f"{len(NO_OUTPUT_FORMAT)} print no data or a format of their own"
    )


def _json_pass(cli: Any, runnable: list[Command]) -> tuple[int, list[str], list[str]]:
    """Runs each command with -o json: (valid JSON printed, needed arguments, refused)."""
    valid, needs_args, refused = 0, [], []
    for c in runnable:
        result = cli(*c.path, "-o", "json")
        if result.exit_code == 2:  # cannot run without arguments (e.g. "give a plan code")
            assert result.stdout == "", (c.name, result.stdout)
            assert result.stderr.startswith("Error: "), (c.name, result.stderr)
            needs_args.append(c.name)
            continue
        assert result.exit_code in (0, 1), (c.name, result.exit_code, result.stderr)
        if result.exit_code == 1 and result.stdout == "":  # a refusal: one line on stderr
            assert result.stderr.startswith("Error: "), (c.name, result.stderr)
            refused.append(c.name)
            continue
        try:
            json.loads(result.stdout)
        except ValueError as exc:  # pragma: no cover - the failure message
            raise AssertionError(f"{c.name}: not JSON: {result.stdout[:200]!r}") from exc
        valid += 1
    return valid, needs_args, refused


def test_output_json_is_valid_json(cli: Any, sqlite_url: str) -> None:
    """On a fresh store, then after `mno quickstart` filled it."""
    assert cli("db", "upgrade").exit_code == 0
    runnable = [c for c in leaves() if c.output_is_format() and not c.required()]
    runnable.sort(key=lambda c: c.path == ("quickstart",))  # it fills the store: last
    fresh, needs_args, refused = _json_pass(cli, runnable)
    assert not refused, refused
    again = [c for c in runnable if c.path != ("quickstart",)]
    filled, _, refused = _json_pass(cli, again)
    print(
        f"\n-o json: {len(runnable)} commands take -o and need no argument: "
        f"{fresh} printed valid JSON on a fresh store and {filled} again on a populated one; "
        f"({', '.join(refused)} refused the second time, as it should); "
        f"{len(needs_args)} need an argument all the same ({', '.join(needs_args)})"
    )
    assert fresh >= 45


def _rows(url: str) -> int:
    """Every row of every table: nothing written means this does not move."""
    from sqlmodel import SQLModel

    from mno.store import db
    from mno.store.models import load_all

    load_all()
    with db.get_engine(url).connect() as conn:
        return sum(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in SQLModel.metadata.sorted_tables
        )


def test_destructive_commands_refuse_off_a_terminal_without_yes(cli: Any, sqlite_url: str) -> None:
    assert cli("quickstart").exit_code == 0  # a store with something to destroy
    before = (counts(sqlite_url), _rows(sqlite_url))
    destructive = [c for c in leaves() if is_destructive(c)]
    for c in destructive:
        assert {"--yes", "-y"} <= c.options, f"{c.name} has no --yes"
        args = [*dummy_args(c), *DESTRUCTIVE_WITH.get(c.path, [])]
        result = cli(*c.path, *args)  # stdin is not a terminal under the runner
        assert result.exit_code == 2, (c.name, result.exit_code, result.stdout, result.stderr)
        assert result.stdout == "", c.name
        assert result.stderr.count("\n") == 1, (c.name, result.stderr)
        assert "pass --yes to confirm off a terminal" in result.stderr, (c.name, result.stderr)
        assert (counts(sqlite_url), _rows(sqlite_url)) == before, c.name
    print(
        f"\n--yes: {len(destructive)} destructive commands refuse off a terminal "
        f"without --yes (exit 2, nothing written): {', '.join(c.name for c in destructive)}"
    )
    assert len(destructive) >= 25


LIST_OPTIONS = ("--limit", "--after", "--all")


def test_list_commands_take_limit_after_and_all() -> None:
    """Every list command pages: ``--limit``, ``--after CURSOR`` and ``--all``."""
    lists = [c for c in leaves() if is_list(c)]
    lacking = {
        c.name: [o for o in LIST_OPTIONS if o not in c.options]
        for c in lists
        if not all(o in c.options for o in LIST_OPTIONS)
    }
    assert not lacking, f"list commands without {', '.join(LIST_OPTIONS)}: {lacking}"
    limits = {c.name: c.command.params for c in lists}
    for name, params in limits.items():
        (limit,) = [p for p in params if "--limit" in p.opts]
        assert limit.default == 100, (name, limit.default)
    print(
        f"\n--limit/--after/--all: {len(lists)} list commands take all three, default "
        f"--limit 100 ({', '.join(c.name for c in lists)})"
    )


HINT = re.compile(r"^… more results: .+ --after (\S+) \(or --all\)$")


def _walk_pages(cli: Any, c: Command) -> list[Any]:
    """Every row of ``c`` one at a time (``--limit 1``), after the cursor each page prints."""
    rows: list[Any] = []
    args: list[str] = []
    while True:
        result = cli(*c.path, "--limit", "1", *args, "-o", "json")
        assert result.exit_code == 0, (c.name, result.stderr)
        page = json.loads(result.stdout)  # the hint is never on stdout
        assert isinstance(page, list) and len(page) <= 1, (c.name, page)
        rows += page
        hints = [line for line in result.stderr.splitlines() if "more results" in line]
        if not hints:
            return rows
        found = HINT.match(hints[0])
        assert found and page, (c.name, hints)
        args = ["--after", found.group(1)]
        assert len(rows) < 1000, c.name


def test_list_commands_page_with_the_printed_cursor(cli: Any, sqlite_url: str) -> None:
    """On a populated store, each list command that needs no argument: ``--all -o json``
    is one JSON array, and walking it a row at a time with the printed cursors visits the
    same rows in the same order."""
    assert cli("quickstart").exit_code == 0
    more = [
        *(["metric", "create", f"m-{n}", "--aggregation", "sum"] for n in range(3)),
        *(["coupon", "create", f"c-{n}", "--value", "10"] for n in range(3)),
        *(["tax-rate", "create", f"t-{n}", "--country", "FR", "--rate", "20"] for n in range(3)),
        *(["user", "create", f"u{n}@example.com"] for n in range(3)),
        *(
            ["charge", "add", "example-co", "--amount", "1.00", "--currency", "EUR"]
            + ["--description", f"setup {n}"]
            for n in range(3)
        ),
        *(
            ["subscription", "create", "example-co", p["code"]]
            for p in cli.json("billing", "plan", "list")
        ),
    ]
    for args in more:
        assert cli(*args).exit_code == 0, args
    walked, short = [], []
    for c in leaves():
        if not is_list(c) or c.required():
            continue
        result = cli(*c.path, "--all", "-o", "json")
        assert result.exit_code == 0, (c.name, result.stderr)
        everything = json.loads(result.stdout)
        assert isinstance(everything, list), c.name
        assert "more results" not in result.stderr, c.name
        if len(everything) < 2:
            short.append(c.name)
            continue
        assert _walk_pages(cli, c) == everything, c.name
        walked.append(f"{c.name} ({len(everything)})")
    print(
        f"\n--after: {len(walked)} list commands walked row by row with the printed cursor "
        f"equal their --all: {', '.join(walked)}; {len(short)} had fewer than 2 rows"
    )
    assert {
        "events list",
        "audit list",
        "tenant list",
        "app list",
        "metric list",
        "coupon list",
        "tax-rate list",
        "user list",
        "charge list",
    } <= {w.split(" (")[0] for w in walked}
