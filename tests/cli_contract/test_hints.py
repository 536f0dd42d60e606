"""Hints name only commands and options that exist: every `mno …` quoted in the source
(error hints, help, docstrings) is walked against the command tree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.cli_contract.walk import everything

ROOT = Path(__file__).resolve().parents[2]
QUOTED = re.compile(r"`(mno(?: [^`{}]+)?)`")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def test_quoted_commands_and_their_options_exist() -> None:
    tree = {c.path: c for c in everything()}
    root_options = tree[()].options | {"-h", "--help"}
    checked, wrong = 0, []
    for file in sorted((ROOT / "mno").rglob("*.py")):
        if "migrations" in file.parts:
            continue
        for n, line in enumerate(file.read_text().splitlines(), 1):
            for quoted in QUOTED.findall(line):
                path: tuple[str, ...] = ()
                for word in quoted.split()[1:]:
                    if (*path, word) not in tree:
                        break
                    path = (*path, word)
                where = f"{file.relative_to(ROOT)}:{n}: `{quoted}`"
                words = quoted.split()[1:]
                if words and not words[0].startswith("-") and not path:
                    wrong.append(f"{where}: no such command")
                    continue
                for option in OPTION.findall(quoted):
                    if option not in tree[path].options | root_options:
                        wrong.append(f"{where}: {' '.join(path) or 'mno'} has no {option}")
                checked += 1
    assert checked > 50
    assert not wrong, "\n".join(wrong)
    print(f"\nhints: {checked} quoted commands checked")


def test_a_missing_billing_plan_points_at_billing_plan_list(store_url: str, cli: Any) -> None:
    r = cli("billing", "plan", "delete", "nope", "--yes")
    assert r.exit_code == 1
    assert r.stderr == "Error: plan nope not found (see `mno billing plan list`)\n"
