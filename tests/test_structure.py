"""The import rules of docs/architecture.md, checked with import-linter.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); ``lint-imports`` runs
the same check by hand. Imports inside functions count like any other. A second test
makes sure every package and top-level module is named in the contracts, so a new package
cannot slip past them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
FACES = {"cli", "api", "agents"}  # the layers that may import the domain packages


def _contracts() -> dict[str, dict[str, Any]]:
    from importlinter.api import read_configuration

    config = read_configuration(str(PYPROJECT))
    return {c["name"]: c for c in config["contracts_options"]}


def _modules() -> tuple[set[str], set[str]]:
    """(packages, top-level modules) directly under mno/, as dotted names."""
    base = ROOT / "mno"
    packages = {f"mno.{p.name}" for p in base.iterdir() if (p / "__init__.py").is_file()}
    modules = {f"mno.{p.stem}" for p in base.glob("*.py") if p.stem not in ("__init__", "__main__")}
    return packages, modules


def test_import_contracts_are_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", [str(ROOT), *sys.path])
    status = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert status == EXIT_STATUS_SUCCESS, report


def test_every_package_is_named_in_the_contracts() -> None:
    contracts = _contracts()
    packages, modules = _modules()
    everything = packages | modules

    def names(contract: str, key: str) -> set[str]:
        return set(contracts[contract][key])

    faces = {f"mno.{f}" for f in FACES}
    assert everything - {"mno.cli"} <= names("Only the CLI uses typer and rich", "source_modules")
    assert packages - {"mno.store"} <= names(
        "The store knows no domain package", "forbidden_modules"
    )
    assert everything - faces <= names(
        "Domain packages never import the agents, the CLI or the API", "source_modules"
    )
    assert everything - {"mno.store"} <= names(
        "Migrations import nothing from mno but the store they freeze", "forbidden_modules"
    )
