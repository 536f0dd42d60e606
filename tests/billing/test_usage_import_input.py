"""``mno usage import`` of hostile files: exit 2 with the line, no traceback, nothing
written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.billing.conftest import CATALOGUE
from tests.conftest import counts

GOOD = '{"tenant":"acme","metric":"api_calls","quantity":1,"at":"2026-10-01T00:00:00Z"'


def _setup(cli: Any, tmp_path: Path) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(CATALOGUE.split("---")[0])
    assert cli("metric", "create", "-f", m).exit_code == 0
    assert cli("tenant", "create", "acme").exit_code == 0


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("binary.jsonl", bytes(range(256)) * 4, "line 1: not UTF-8 text"),
        ("binary.csv", b"tenant,metric\n\xff\xfe\x00\x01", "not UTF-8 text"),
        ("nul.csv", b"tenant,metric,quantity\nacme,api_\x00calls,1\n", "line 2"),
        ("array.jsonl", b"[1, 2, 3]\n", "line 1: expected a JSON object, got list"),
        ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1: JSON nested too deeply"),
        ("idlist.jsonl", (GOOD + ',"id":[1,2]}\n').encode(), "line 1: id must be text"),
        (
            "dupes.jsonl",
            (GOOD + ',"id":"a"}\n' + GOOD + ',"id":"b"}\n' + GOOD + ',"id":"a"}\n').encode(),
            "line 3: id 'a' repeats line 1",
        ),
        ("long.jsonl", (GOOD + ',"id":"' + "x" * 201 + '"}\n').encode(), "longer than 200"),
    ],
)
def test_hostile_files_exit_2_with_the_line(
    cli: Any, sqlite_url: str, tmp_path: Path, name: str, content: bytes, words: str
) -> None:
    _setup(cli, tmp_path)
    f = tmp_path / name
    f.write_bytes(content)
    before = counts(sqlite_url)
    r = cli("usage", "import", f)
    assert r.exit_code == 2, (r.stdout, r.stderr, r.exception)
    assert words in r.stderr
    assert "Traceback" not in r.stderr and "Error" not in r.stderr.replace("Error:", "")
    assert counts(sqlite_url) == before


def test_an_id_already_recorded_refuses_the_file(cli: Any, sqlite_url: str, tmp_path: Path) -> None:
    _setup(cli, tmp_path)
    f = tmp_path / "u.jsonl"
    f.write_text(GOOD + ',"id":"a"}\n')
    assert cli.json("usage", "import", f) == {"imported": 1}
    f.write_text(GOOD + ',"id":"b"}\n' + GOOD + ',"id":"a"}\n')
    before = counts(sqlite_url)
    r = cli("usage", "import", f)
    assert r.exit_code == 2 and "line 2: id 'a' is already recorded" in r.stderr
    assert counts(sqlite_url) == before
