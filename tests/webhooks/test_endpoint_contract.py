"""What an operator expects of an endpoint: only later events unless a backlog is asked
for, header values sealed and never exported, a warning for a URL that cannot work, and
list and show telling the same status with the last failure."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from mno import clock
from mno.store import db

from .conftest import Receiver
from .test_delivery import emit


def _types_received(receiver: Receiver) -> list[int]:
    return [r.json["data"]["i"] for r in receiver.requests if r.json["type"] == "tenant.updated"]


def test_a_new_endpoint_gets_only_later_events_unless_it_asks(
    cli: Any, sqlite_url: str, receiver: Receiver
) -> None:
    emit(sqlite_url, 3)  # before any endpoint
    assert cli.json("agents", "tick", "dispatcher")["done"] == 0
    later = cli.json("webhook", "endpoint", "add", receiver.url, "--events", "tenant.updated")
    assert later["backlog"] == 0
    emit(sqlite_url, 2)
    cli.json("agents", "tick", "dispatcher")
    assert sorted(_types_received(receiver)) == [0, 1]  # the two later ones only

    receiver.requests.clear()
    backlog = cli.json(
        "webhook", "endpoint", "add", receiver.url + "?all", "--events", "tenant.updated",
        "--from-event", "1",
    )  # fmt: skip
    assert backlog["backlog"] == 5  # every event so far, queued at once
    cli.json("agents", "tick", "dispatcher")
    got = [r for r in receiver.requests if r.path.endswith("?all")]
    assert sorted(r.json["data"]["i"] for r in got) == [0, 0, 1, 1, 2]
    assert not [r for r in receiver.requests if not r.path.endswith("?all")]


def test_since_asks_for_the_events_of_a_window(
    cli: Any, sqlite_url: str, receiver: Receiver
) -> None:
    start = clock.now()
    clock.set_now(start - timedelta(hours=5))
    emit(sqlite_url, 1)  # too old for --since 2h
    clock.set_now(start - timedelta(hours=1))
    emit(sqlite_url, 2)
    clock.set_now(start)
    e = cli.json("webhook", "endpoint", "add", receiver.url, "--since", "2h")
    assert e["backlog"] == 2
    bad = cli("webhook", "endpoint", "add", receiver.url, "--since", "2h", "--from-event", "1")
    assert bad.exit_code == 2 and "not both" in bad.stderr


def test_header_values_are_sealed_sent_and_never_exported(
    cli: Any, sqlite_url: str, receiver: Receiver
) -> None:
    assert cli("secret", "set", "HOOK_TOKEN", input="tok-123\n").exit_code == 0
    e = cli.json(
        "webhook", "endpoint", "add", receiver.url, "--events", "tenant.updated",
        "--header", "X-Api-Key=plain-value-42", "--header", "Authorization=secret:HOOK_TOKEN",
    )  # fmt: skip
    assert e["headers"] == {"Authorization": "secret:HOOK_TOKEN", "X-Api-Key": "(sealed)"}
    with db.get_engine(sqlite_url).connect() as conn:
        stored = conn.execute(sa.text("SELECT headers FROM webhook_endpoint")).scalar_one()
    stored = stored if isinstance(stored, dict) else json.loads(stored)
    assert stored["Authorization"] == "secret:HOOK_TOKEN"
    assert stored["X-Api-Key"].startswith("sealed:") and "plain-value-42" not in stored["X-Api-Key"]

    emit(sqlite_url, 1)
    cli.json("agents", "tick", "dispatcher")
    (req,) = receiver.requests
    assert req.headers["x-api-key"] == "plain-value-42"
    assert req.headers["authorization"] == "tok-123"

    exported = cli("export")
    assert exported.exit_code == 0, exported.stderr
    assert "plain-value-42" not in exported.stdout and "sealed" not in exported.stdout
    assert "secret:HOOK_TOKEN" in exported.stdout
    for command in (("webhook", "endpoint", "list"), ("webhook", "endpoint", "show", e["id"])):
        out = cli(*command, "-o", "json")
        assert "plain-value-42" not in out.stdout and "tok-123" not in out.stdout


def test_documents_refuse_credentials_in_plain_text(
    cli: Any, sqlite_url: str, tmp_path: Any
) -> None:
    doc = tmp_path / "hooks.yaml"
    base = "kind: WebhookEndpoint\nmetadata: {name: crm}\nspec:\n  url: https://crm.example/hook\n"
    doc.write_text(base + "  headers: {Authorization: Bearer abc}\n")
    refused = cli("validate", "-f", str(doc))
    assert refused.exit_code == 2 and "secret:NAME" in refused.stdout + refused.stderr
    doc.write_text(base + "  headers: {Authorization: 'secret:CRM_TOKEN', X-Team: ops}\n")
    assert cli("validate", "-f", str(doc)).exit_code == 0


def test_add_warns_when_the_url_cannot_work(cli: Any, sqlite_url: str, monkeypatch: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket is closed
    down = cli("webhook", "endpoint", "add", f"http://127.0.0.1:{closed}/hook", "-o", "json")
    assert down.exit_code == 0
    assert "does not accept connections" in down.stderr
    assert json.loads(down.stdout)["reachable"] is False

    monkeypatch.delenv("MNO_WEBHOOKS_ALLOW_NETWORKS")
    refused = cli("webhook", "endpoint", "add", "http://169.254.169.254/latest", "-o", "json")
    assert refused.exit_code == 0  # registered, but the operator is told at once
    assert "would be refused" in refused.stderr
    assert len(cli.json("webhook", "endpoint", "list")) == 2


def test_list_and_show_agree_on_status_and_last_failure(
    cli: Any, sqlite_url: str, receiver: Receiver
) -> None:
    receiver.respond = lambda req: (503, {}, b"down for maintenance")
    e = cli.json("webhook", "endpoint", "add", receiver.url, "--no-check")
    assert e["reachable"] is None
    emit(sqlite_url, 1)
    cli.json("agents", "tick", "dispatcher")
    (listed,) = cli.json("webhook", "endpoint", "list")
    shown = cli.json("webhook", "endpoint", "show", e["id"])
    assert listed["status"] == shown["status"] == "failing"
    assert listed["last_failure"] == shown["last_failure"]
    assert shown["last_failure"].startswith("HTTP 503") and shown["last_failure"].endswith("Z")
    cli.json("webhook", "endpoint", "disable", e["id"])
    (listed,) = cli.json("webhook", "endpoint", "list")
    assert listed["status"] == cli.json("webhook", "endpoint", "show", e["id"])["status"]
    assert listed["status"] == "disabled"
    table = cli("webhook", "endpoint", "list")
    assert "disabled" in table.stdout and "HTTP 503" in table.stdout
