"""The sync package's arrows point down: no agents, no CLI, no terminal libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import mno.sync

FORBIDDEN = ("mno.agents", "mno.cli", "typer", "rich")


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def test_sync_imports_no_agents_cli_or_terminal_libraries() -> None:
    root = Path(mno.sync.__file__).parent
    found = {
        f"{path.name}: {name}"
        for path in sorted(root.glob("*.py"))
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not found
