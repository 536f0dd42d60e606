"""The remote CLI mode for instances, subscriptions, invoices and access checks: each
command over HTTP compared with the same command on the hub's store."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from tests.api_hub.test_remote_cli import remote, remote_json
from tests.billing.conftest import CATALOGUE
from tests.conftest import Cli, counts


@pytest.fixture
def wiki(session: Callable[..., AbstractContextManager[Any]], world: dict[str, str]) -> str:
    from mno.tenancy import apps

    with session() as s:
        apps.create(s, "Wiki", code="wiki", stack="nex", access="any", image="wiki:1", port=8080)
    return "wiki"


@pytest.fixture
def plans(session: Callable[..., AbstractContextManager[Any]], world: dict[str, str]) -> None:
    from mno.billing import documents
    from mno.tenancy import tenants

    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.update(s, "acme", currency="EUR")


def test_instances_over_http(cli: Cli, api: str, world: dict[str, str], wiki: str) -> None:
    admin, bob, carol = world["admin"], world["bob"], world["carol"]
    made = remote_json(cli, api, admin, "instance", "create", "acme", "wiki", "--name", "acme-wiki")
    assert (made["tenant"], made["status"], made["desired"]) == ("acme", "staged", "running")
    local = cli.json("instance", "show", "acme-wiki")
    shown = remote_json(cli, api, bob, "instance", "show", "acme-wiki")
    # the Hub API's instance carries 20 of the CLI's fields (no container, volume, network,
    # deploy, attempts or drift), with the same values
    assert shown == {k: local[k] for k in shown} and len(shown) == 20
    listed = remote_json(cli, api, bob, "instance", "list", "--tenant", "acme")
    assert [i["name"] for i in listed] == ["acme-wiki"]
    stopped = remote_json(cli, api, admin, "instance", "stop", "acme-wiki")
    assert stopped["desired"] == "stopped"
    assert cli.json("instance", "show", "acme-wiki")["desired"] == "stopped"
    assert remote_json(cli, api, admin, "instance", "start", "acme-wiki")["desired"] == "running"
    denied = remote(cli, api, bob, "instance", "stop", "acme-wiki")
    assert denied.exit_code == 1 and denied.stderr.startswith("Error: ")
    hidden = remote(cli, api, carol, "instance", "show", "acme-wiki")
    assert hidden.exit_code == 1 and "instance acme-wiki not found" in hidden.stderr
    no_tenant = remote(cli, api, bob, "instance", "list")
    assert no_tenant.exit_code == 2 and "--tenant is required with --server" in no_tenant.stderr
    waits = remote(cli, api, admin, "instance", "stop", "acme-wiki", "--wait")
    assert waits.exit_code == 2 and "--wait is not available with --server" in waits.stderr


def test_subscriptions_and_invoices_over_http(
    cli: Cli,
    api: str,
    world: dict[str, str],
    plans: None,
    session: Callable[..., AbstractContextManager[Any]],
    store_url: str,
) -> None:
    from mno.billing import invoices

    admin, bob, carol = world["admin"], world["bob"], world["carol"]
    sub = remote_json(cli, api, admin, "subscription", "create", "acme", "pro", "--invoice-now")
    assert (sub["tenant"], sub["plan"], sub["status"]) == ("acme", "pro", "active")
    local = cli.json("subscription", "list", "--tenant", "acme")
    listed = remote_json(cli, api, bob, "subscription", "list", "--tenant", "acme")
    # the same rows; the Hub API names the subscription's app, the CLI its bundle
    common = set(listed[0]) & set(local[0])
    assert common >= {"id", "tenant", "plan", "status", "started_at", "cancel_at", "coupon"}
    assert [{k: x[k] for k in common} for x in listed] == [{k: x[k] for k in common} for x in local]
    assert [x["id"] for x in listed] == [sub["id"]]
    assert remote_json(cli, api, bob, "subscription", "show", sub["id"]) == listed[0]
    assert remote(cli, api, carol, "subscription", "show", sub["id"]).exit_code == 1
    refused = remote(cli, api, bob, "subscription", "create", "acme", "pro")
    assert refused.exit_code == 1
    with session() as s:
        inv = invoices.list_invoices(s, "acme")[0]
        invoices.issue(s, str(inv.id))
        number = invoices.get(s, inv.id).number
    local_inv = cli.json("invoice", "show", number)
    far_inv = remote_json(cli, api, bob, "invoice", "show", number)
    assert {k: far_inv[k] for k in local_inv} == local_inv
    assert far_inv["lines"] == local_inv["lines"]
    rows = remote_json(cli, api, bob, "invoice", "list", "--tenant", "acme")
    assert [r["number"] for r in rows] == [number]
    assert rows[0]["total"] == local_inv["total"]
    hidden = remote(cli, api, carol, "invoice", "show", number)
    assert hidden.exit_code == 1
    before = counts(store_url)
    twice = remote(cli, api, bob, "subscription", "cancel", sub["id"], "--yes")
    assert twice.exit_code == 1 and counts(store_url) == before
    canceled = remote_json(cli, api, admin, "subscription", "cancel", sub["id"], "--yes")
    assert canceled["status"] == "canceled"
    again = remote(cli, api, admin, "subscription", "cancel", sub["id"], "--yes")
    assert again.exit_code == 1
    assert f"subscription {sub['id']} is already canceled" in again.stderr


def test_access_check_over_http(cli: Cli, api: str, world: dict[str, str]) -> None:
    args = ["access", "check", "bob@acme.io", "acme", "update_tenant"]
    local = cli.json(*args)
    assert remote_json(cli, api, world["admin"], *args) == local
    assert local["allowed"] is False
    table = remote(cli, api, world["admin"], *args)
    assert table.stdout == cli(*args).stdout
    hidden = remote(cli, api, world["carol"], *args)
    assert hidden.exit_code == 1


def test_app_list_is_an_operators(
    cli: Cli,
    api: str,
    world: dict[str, str],
    wiki: str,
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    from mno.tenancy import apps

    with session() as s:
        apps.create(s, "CRM", code="crm", owner="acme")
        apps.grant(s, "crm", "globex")
    local = cli.json("app", "list")
    assert [a["code"] for a in local] == ["crm", "wiki"]
    assert remote_json(cli, api, world["op"], "app", "list") == local
    assert remote_json(cli, api, world["op"], "app", "list", "--all") == local
    first = remote(cli, api, world["op"], "app", "list", "--limit", "1", "-o", "json")
    assert [a["code"] for a in json.loads(first.stdout)] == ["crm"] and "--after" in first.stderr
    nex = remote_json(cli, api, world["op"], "app", "list", "--stack", "nex")
    assert [a["code"] for a in nex] == ["wiki"]
    assert remote(cli, api, world["op"], "app", "list").stdout == cli("app", "list").stdout
    refused = remote(cli, api, world["admin"], "app", "list")
    assert refused.exit_code == 1 and "needs an operator" in refused.stderr


def test_lead_reads_are_identical_local_and_remote(
    cli: Cli,
    api: str,
    world: dict[str, str],
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    from mno.tenancy import leads

    with session() as s:
        made = [
            leads.create(
                s,
                email=f"ann{i}@initech.io",
                first_name="Ann",
                last_name=f"Lee{i}",
                company=f"Initech {i}",
                country="FR",
            ).lead.id
            for i in range(3)
        ]
    op = world["op"]
    local = cli.json("lead", "list")
    assert len(local) == 3
    assert remote_json(cli, api, op, "lead", "list") == local
    assert remote_json(cli, api, op, "lead", "list", "--all") == local
    for fmt in ("table", "yaml"):
        args = ("lead", "list", "-o", fmt)
        assert remote(cli, api, op, *args).stdout == cli(*args).stdout
    first = remote(cli, api, op, "lead", "list", "--limit", "2", "-o", "json")
    local_first = cli("lead", "list", "--limit", "2", "-o", "json")
    assert first.stdout == local_first.stdout and first.stderr == local_first.stderr
    cursor = shlex.split(first.stderr.split("--after", 1)[1])[0]  # the hint names the rest
    rest = remote_json(cli, api, op, "lead", "list", "--after", cursor)
    assert json.loads(first.stdout) + rest == local
    assert remote_json(cli, api, op, "lead", "list", "--status", "converted") == []
    lead_id = str(made[1])
    shown = remote_json(cli, api, op, "lead", "show", lead_id)
    assert shown == cli.json("lead", "show", lead_id)
    assert "code_hash" not in shown
    table = ("lead", "show", lead_id[:8])  # a unique prefix, as locally
    assert remote(cli, api, op, *table).stdout == cli(*table).stdout
    missing = remote(cli, api, op, "lead", "show", "0000dead")
    assert missing.exit_code == cli("lead", "show", "0000dead").exit_code == 1
    # leads are the platform's: a tenant admin is refused, and learns nothing
    for args in (["lead", "list"], ["lead", "show", lead_id]):
        refused = remote(cli, api, world["admin"], *args)
        assert refused.exit_code == 1 and "needs an operator" in refused.stderr
        assert "ann1@initech.io" not in refused.stdout + refused.stderr


def test_commands_without_a_remote_form_refuse(cli: Cli, api: str, world: dict[str, str]) -> None:
    create = ["lead", "create", "--email", "a@b.io", "--first-name", "A", "--last-name", "B"]
    refused = ([*create, "--company", "C"], ["lead", "verify", "x", "--code", "1"])
    for args in (*refused, ["app", "show", "wiki"]):
        result = remote(cli, api, world["op"], *args)
        assert result.exit_code == 2, args
        assert "not available with --server" in result.stderr
