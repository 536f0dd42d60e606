"""The remote CLI mode: ``mno --server URL --token T …`` against a real hub on loopback.

Each command runs in-process (CliRunner) and reaches a uvicorn server over HTTP; the
local and the remote answers are compared on the same store.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.conftest import Cli, counts


def remote(cli: Cli, api: str, token: str, *args: str) -> Any:
    return cli("--server", api, "--token", token, *args)


def remote_json(cli: Cli, api: str, token: str, *args: str) -> Any:
    result = remote(cli, api, token, *args, "-o", "json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def same(cli: Cli, api: str, token: str, args: Sequence[str]) -> Any:
    """Run ``args`` locally and remotely with -o json; both answers must be equal."""
    local = cli.json(*args)
    far = remote_json(cli, api, token, *args)
    assert far == local
    return local


def test_tenant_reads_are_identical_local_and_remote(
    cli: Cli, api: str, world: dict[str, str]
) -> None:
    shown = same(cli, api, world["op"], ["tenant", "show", "acme"])
    assert shown["key"] == "acme"
    listed = same(cli, api, world["op"], ["tenant", "list"])
    assert [t["key"] for t in listed] == ["acme", "globex"]
    assert same(cli, api, world["op"], ["tenant", "list", "--all"]) == listed
    yaml_local = cli("tenant", "list", "-o", "yaml")
    yaml_far = remote(cli, api, world["op"], "tenant", "list", "-o", "yaml")
    assert yaml_far.exit_code == 0 and yaml_far.stdout == yaml_local.stdout
    table_local = cli("tenant", "list")
    table_far = remote(cli, api, world["op"], "tenant", "list")
    assert table_far.stdout == table_local.stdout and "globex" in table_far.stdout
