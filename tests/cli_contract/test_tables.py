"""Tables: tab-separated off a terminal, drawn on one, `-o wide`, `--no-headers`, user
data never able to send terminal control sequences, timestamps to the second."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mno.cli import output

EVIL = "Evil\x1b]0;pwned\x07\x1b[31mRed\x1b[0m"
ROOT = Path(__file__).resolve().parents[2]


def test_off_a_terminal_tables_are_tab_separated(cli: Any, sqlite_url: str) -> None:
    assert cli("tenant", "create", "acme", "--name", "Acme\tCorp").exit_code == 0
    assert cli("tenant", "create", "bolt").exit_code == 0
    listed = cli("tenant", "list")
    lines = listed.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["KEY", "NAME", "TIER"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["acme"][1] == "Acme Corp"  # a tab inside a value cannot shift the columns
    assert len({len(line.split("\t")) for line in lines}) == 1
    assert not any(ch in listed.stdout for ch in "│┃━─")

    bare = cli("--no-headers", "tenant", "list")
    assert bare.stdout.splitlines() == lines[1:]

    wide = cli("tenant", "list", "-o", "wide").stdout.splitlines()
    header = wide[0].split("\t")
    assert {"ID", "CREATED AT", "TIMEZONE"} <= set(header) and len(header) > len(
        lines[0].split("\t")
    )
    created = wide[1].split("\t")[header.index("CREATED AT")]
    assert len(created) == len("2026-11-02 10:00:00") and created[10] == " "

    shown = cli("tenant", "show", "acme").stdout.splitlines()
    assert shown[0].startswith("id\t") and "key\tacme" in shown


def test_user_data_cannot_send_terminal_control_sequences(cli: Any, sqlite_url: str) -> None:
    assert cli("tenant", "create", "acme", "--name", EVIL).exit_code == 0
    for command in (("tenant", "list"), ("tenant", "show", "acme")):
        out = cli(*command).stdout
        assert "\x1b" not in out and "\x07" not in out
        assert "Evil\\x1b]0;pwned\\x07\\x1b[31mRed" in out
    assert cli.json("tenant", "show", "acme")["name"] == EVIL  # data itself is kept
    assert output.cell("a\x9bb\x00c\x7f") == "a\\x9bb\\x00c\\x7f"


@pytest.mark.skipif(not shutil.which("script"), reason="util-linux script is not installed")
def test_on_a_terminal_tables_are_drawn_and_still_safe(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "MNO_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
        "NO_COLOR": "1",
        "COLUMNS": "160",
        "TERM": "xterm",
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
    }
    made = subprocess.run(
        [sys.executable, "-m", "mno", "tenant", "create", "acme", "--name", EVIL],
        env=env,
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    shown = subprocess.run(
        ["script", "-qec", f"{sys.executable} -m mno tenant list", "/dev/null"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout.decode()
    assert "KEY" in text and "━" in text  # drawn for a person
    assert "\x1b]0;pwned" not in text and "\x07" not in text
    assert "\\x1b]0;pwned" in text
