"""YAML alias bombs are refused with exit 2 wherever YAML is read; modest anchors work."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mno import safeyaml
from mno.errors import BadInput


def bomb(levels: int = 9, width: int = 9, indent: str = "") -> str:
    """The "billion laughs": each level lists the one before ``width`` times."""
    lines = [f'{indent}l0: &l0 ["lol"]']
    for n in range(1, levels + 1):
        refs = ", ".join([f"*l{n - 1}"] * width)
        lines.append(f"{indent}l{n}: &l{n} [{refs}]")
    return "\n".join(lines) + "\n"


def test_expanded_size_counts_every_alias_once_per_use() -> None:
    import yaml

    node = yaml.compose("a: &x [1, 2]\nb: [*x, *x, *x]\n", Loader=yaml.SafeLoader)
    distinct, expanded = safeyaml.expanded_size(node)
    # mapping, 2 keys, the list x and its 2 items, the list b; b holds x three times
    assert distinct == 7
    assert expanded == 1 + 2 + 3 + 1 + 3 * 3


def test_validate_refuses_a_billion_laughs_quickly(tmp_path: Path) -> None:
    """Before the budget, this document took ``mno validate`` to gigabytes and no answer."""
    doc = tmp_path / "bomb.yaml"
    doc.write_text("kind: Tenant\nmetadata: {name: acme}\nspec:\n" + bomb(indent="  "))
    proc = subprocess.run(
        [sys.executable, "-m", "mno", "validate", "-f", str(doc)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "aliases expand to" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "read",
    [
        lambda text: __import__("mno.platform").platform.parse(text),
        lambda text: __import__("mno.agents.config").agents.config.parse(text),
        lambda text: __import__("mno.billing.documents").billing.documents.parse(text),
        lambda text: __import__("mno.sync.spec").sync.spec.parse(text),
    ],
    ids=["platform", "agents", "billing-catalogue", "connector"],
)
def test_every_reader_refuses_the_bomb(read: Callable[[str], Any]) -> None:
    with pytest.raises(BadInput, match="aliases expand to"):
        read(bomb())


def test_profile_refuses_the_bomb(mno_env: Path) -> None:
    from mno import settings

    (settings.home() / "config.yaml").write_text("profiles:\n  default:\n" + bomb(indent="    "))
    with pytest.raises(BadInput, match="aliases expand to"):
        settings.profile()


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(BadInput, match="recursive alias"):
        safeyaml.safe_load("a: &a [*a]\n", "loop.yaml")


def test_modest_anchors_and_merge_keys_still_load() -> None:
    text = (
        "defaults: &d {region: eu, tier: silo}\n"
        "a: {<<: *d, name: a}\n"
        "b: {<<: *d, name: b}\n"
        "c: [*d, *d]\n"
    )
    data = safeyaml.safe_load(text, "ok.yaml")
    assert data["b"] == {"region": "eu", "tier": "silo", "name": "b"}
    assert data["c"] == [data["defaults"], data["defaults"]]
    docs = safeyaml.safe_load_all("---\nx: &x 1\ny: *x\n---\nz: 2\n", "two.yaml")
    assert docs == [{"x": 1, "y": 1}, {"z": 2}]


def test_deep_nesting_is_refused_before_it_is_built() -> None:
    import pytest

    from mno import safeyaml
    from mno.errors import BadInput

    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(BadInput, match="nested deeper than 100 levels"):
        safeyaml.safe_load(deep, "deep.yaml")
    with pytest.raises(BadInput, match="nested deeper"):
        safeyaml.safe_load_all("a: 1\n---\n" + deep, "deep.yaml")
    assert safeyaml.safe_load("[" * 100 + "]" * 100, "ok.yaml") is not None
