"""Bad numbers and times on the command line: exit 2 with one line, nothing written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import counts


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["audit", "list", "--since", "99999999d"], "before the year 1"),
        (["audit", "list", "--since", "9999999999999d"], "out of range"),
        (["events", "list", "--since", "1e400s"], "invalid time"),
        (["events", "list", "--after", str(10**30)], "--after"),
        (["events", "list", "--after", "-1"], "--after"),
        (["audit", "list", "--limit", "-5"], "--limit"),
        (["tenant", "list", "--limit", "0"], "--limit"),
        (["lead", "list", "--limit", "-1"], "--limit"),
        (["invoice", "list", "--limit", "-5"], "--limit"),
        (["webhook", "deliveries", "--limit", "-5"], "--limit"),
    ],
)
def test_out_of_range_input_exits_2_with_one_line(
    cli: Any, sqlite_url: str, args: list[str], words: str
) -> None:
    cli("tenant", "create", "acme", "--name", "Acme")
    before = counts(sqlite_url)
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert words in result.stderr
    assert "Traceback" not in result.stderr and "Error" in result.stderr
    assert counts(sqlite_url) == before


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [(["tenat", "list"], "'tenant'"), (["invoce"], "'invoice'"), (["tenant", "lst"], "'list'")],
)
def test_a_mistyped_command_gets_did_you_mean(cli: Any, args: list[str], suggestion: str) -> None:
    """Top-level groups load lazily; the suggestion still covers all of them."""
    result = cli(*args)
    assert result.exit_code == 2
    assert f"Did you mean {suggestion}" in result.stderr


def test_bad_store_url_and_home_exit_2_with_the_fix(
    cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    result = cli("--db", "mysql://u@h/db", "tenant", "list")
    assert result.exit_code == 2 and "unsupported store URL" in result.stderr
    assert "sqlite:////" in result.stderr  # the fix names a URL that works
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MNO_HOME", str(blocker / "home"))
    result = cli("tenant", "list")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "cannot use" in result.stderr and "MNO_HOME" in result.stderr


def test_secret_set_reads_a_pipe(cli: Any) -> None:
    from mno import secrets

    result = cli("secret", "set", "PIPED", input="s3cr3t\n")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert secrets.get("PIPED") == "s3cr3t"
    assert "s3cr3t" not in result.stdout + result.stderr
