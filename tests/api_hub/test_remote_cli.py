"""The remote CLI mode: ``mno --server URL --token T …`` against a real hub on loopback.

Each command runs in-process (CliRunner) and reaches a uvicorn server over HTTP; the
local and the remote answers are compared on the same store.
"""

from __future__ import annotations

import json
import shlex
import socket
from collections.abc import Callable, Sequence
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
    first = remote(cli, api, world["op"], "tenant", "list", "--limit", "1", "-o", "json")
    assert [t["key"] for t in json.loads(first.stdout)] == ["acme"]
    cursor = shlex.split(first.stderr.split("--after", 1)[1])[0]  # the hint names the rest
    assert world["op"] not in first.stderr
    rest = remote_json(cli, api, world["op"], "tenant", "list", "--after", cursor)
    assert [t["key"] for t in rest] == ["globex"]
    yaml_local = cli("tenant", "list", "-o", "yaml")
    yaml_far = remote(cli, api, world["op"], "tenant", "list", "-o", "yaml")
    assert yaml_far.exit_code == 0 and yaml_far.stdout == yaml_local.stdout
    table_local = cli("tenant", "list")
    table_far = remote(cli, api, world["op"], "tenant", "list")
    assert table_far.stdout == table_local.stdout and "globex" in table_far.stdout


def test_tenant_writes_over_http_and_their_errors(
    cli: Cli, api: str, world: dict[str, str], store_url: str
) -> None:
    op = world["op"]
    made = remote_json(cli, api, op, "tenant", "create", "initech", "--name", "Initech")
    assert made["status"] == "pending_provision"
    assert cli.json("tenant", "show", "initech") == made  # written to the hub's store
    again = remote(cli, api, op, "tenant", "create", "initech")
    assert again.exit_code == 1 and "initech" in again.stderr
    assert remote_json(cli, api, op, "tenant", "create", "initech", "--if-not-exists") == made
    changed = remote_json(cli, api, op, "tenant", "update", "acme", "--name", "Acme Corp")
    assert changed["name"] == "Acme Corp"
    suspended = remote(cli, api, op, "tenant", "suspend", "acme", "--reason", "arrears")
    assert suspended.exit_code == 0 and "tenant acme is suspended" in suspended.stderr
    twice = remote(cli, api, op, "tenant", "suspend", "acme", "--reason", "arrears")
    local = cli("tenant", "suspend", "acme", "--reason", "arrears")
    assert twice.exit_code == local.exit_code == 1
    # the same one-line message (the hub's problem carries it without the CLI's hint)
    assert twice.stderr.startswith("Error: tenant acme cannot go from suspended")
    assert local.stderr.startswith(twice.stderr.rstrip("\n"))
    assert remote_json(cli, api, op, "tenant", "resume", "acme")["status"] == "active"

    missing = remote(cli, api, op, "tenant", "show", "nope")
    assert missing.exit_code == 1
    assert cli("tenant", "show", "nope").stderr.startswith(missing.stderr.rstrip("\n"))
    before = counts(store_url)
    bad = remote(cli, api, op, "tenant", "create", "Not A Key!")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: ")
    assert counts(store_url) == before


def test_a_member_token_sees_only_its_tenant(cli: Cli, api: str, world: dict[str, str]) -> None:
    bob = world["bob"]
    assert [t["key"] for t in remote_json(cli, api, bob, "tenant", "list")] == ["acme"]
    hidden = remote(cli, api, bob, "tenant", "show", "globex")
    assert hidden.exit_code == 1 and "globex" in hidden.stderr
    assert hidden.stderr == remote(cli, api, bob, "tenant", "show", "nosuch").stderr.replace(
        "nosuch", "globex"
    )
    refused = remote(cli, api, bob, "tenant", "update", "acme", "--name", "Mine")
    assert refused.exit_code == 1
    assert "tenants:write" in refused.stderr  # a member's token cannot get that scope


def test_scope_denial_and_bad_token(
    cli: Cli, api: str, world: dict[str, str], token: Callable[..., str]
) -> None:
    reader = token("op@platform.io", "tenants:read")
    assert remote_json(cli, api, reader, "tenant", "show", "acme")["key"] == "acme"
    denied = remote(cli, api, reader, "tenant", "update", "acme", "--name", "X")
    assert denied.exit_code == 1
    assert "lacks the scope tenants:write" in denied.stderr
    unknown = remote(cli, api, "mnout_not-a-token", "tenant", "list")
    assert unknown.exit_code == 1 and unknown.stderr.startswith("Error: ")
    assert "mnout_not-a-token" not in unknown.stderr + unknown.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_exits_3(cli: Cli) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = cli("--server", url, "--token", "mnout_x", "tenant", "list")
    assert result.exit_code == 3
    assert "service unreachable" in result.stderr and "mnout_x" not in result.stderr


def test_env_and_keyring_token(
    cli: Cli, api: str, world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNO_SERVER", api)
    monkeypatch.setenv("MNO_TOKEN", world["bob"])
    assert [t["key"] for t in cli.json("tenant", "list")] == ["acme"]
    monkeypatch.delenv("MNO_TOKEN")
    none = cli("tenant", "list")
    assert none.exit_code == 2 and "needs a token" in none.stderr
    # the secret is stored with MNO_SERVER set: only commands that reach the hub need it
    assert cli("secret", "set", "hub-token", input=world["carol"] + "\n").exit_code == 0
    assert cli("secret", "set", "ops", input=world["bob"] + "\n").exit_code == 0
    shown = cli("tenant", "list")
    assert "globex" in shown.stdout and world["carol"] not in shown.stdout + shown.stderr
    monkeypatch.setenv("MNO_TOKEN", "secret:ops")
    assert [t["key"] for t in cli.json("tenant", "list")] == ["acme"]


def test_commands_without_a_remote_form_exit_2(
    cli: Cli, api: str, world: dict[str, str], store_url: str
) -> None:
    before = counts(store_url)
    result = remote(cli, api, world["op"], "tenant", "delete", "acme", "--yes")
    assert result.exit_code == 2
    assert "not available with --server" in result.stderr
    tier = remote(cli, api, world["op"], "tenant", "list", "--tier", "silo")
    assert tier.exit_code == 2 and "--tier is not available with --server" in tier.stderr
    assert counts(store_url) == before
    assert cli("tenant", "show", "acme").exit_code == 0  # the local store again


def test_the_hub_replays_a_post_retried_with_its_key(
    api: str, world: dict[str, str], store_url: str
) -> None:
    from mno.remote.client import HubClient

    with HubClient(api, world["op"]) as hub:
        key = {"Idempotency-Key": "create-initech-1"}
        body = {"key": "initech", "name": "Initech"}
        first = hub.request("POST", "/v1/hub/tenants", json=body, headers=key)
        before = counts(store_url)
        again = hub.request("POST", "/v1/hub/tenants", json=body, headers=key)  # a retry
        assert again == first and counts(store_url) == before
