"""The `mno webhook` and `mno notify` commands, and the dispatcher run by `mno agents tick`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import counts

from .conftest import Receiver
from .test_delivery import emit, spec_verify, statuses


def test_endpoint_lifecycle(cli: Any, sqlite_url: str, receiver: Receiver) -> None:
    e = cli.json(
        "webhook",
        "endpoint",
        "add",
        receiver.url,
        "--events",
        "tenant.*",
        "--rate-limit",
        "20/s",
        "--ordered",
        "--timeout",
        "5s",
        "--header",
        "X-A=1",
    )
    assert e["rate_limit"] == "20/s" and e["ordered"] and e["timeout"] == "5s"
    assert "secret" not in e
    shown = cli.json("webhook", "endpoint", "show", e["id"], "--reveal-secret")
    assert shown["secret"].startswith("whsec_")
    assert [x["id"] for x in cli.json("webhook", "endpoint", "list")] == [e["id"]]
    assert cli.json("webhook", "endpoint", "update", e["id"], "--unordered")["ordered"] is False
    assert cli.json("webhook", "endpoint", "disable", e["id"])["enabled"] is False
    assert cli.json("webhook", "endpoint", "enable", e["id"])["enabled"] is True
    rotated = cli.json("webhook", "endpoint", "rotate-secret", e["id"], "--grace", "1h")
    assert rotated["rotation_grace_until"]
    assert (
        cli.json("webhook", "endpoint", "show", e["id"], "--reveal-secret")["secret"]
        != shown["secret"]
    )
    assert cli("webhook", "endpoint", "delete", e["id"], "--yes").exit_code == 0
    assert cli("webhook", "endpoint", "show", e["id"]).exit_code == 1


@pytest.mark.parametrize(
    "args",
    [
        ["ftp://x/y"],
        ["http://x/y", "--events", "Bad Type"],
        ["http://x/y", "--events", "bogus.*"],  # matches nothing in the catalogue
        ["http://x/y", "--events", "tenant.created,tenant.creatd"],
        ["http://x/y", "--rate-limit", "fast"],
        ["http://x/y", "--header", "nope"],
    ],
)
def test_bad_input_writes_nothing(cli: Any, sqlite_url: str, args: list[str]) -> None:
    from mno.store.db import session_scope

    with session_scope(sqlite_url):
        pass
    before = counts(sqlite_url)
    result = cli("webhook", "endpoint", "add", *args)
    assert result.exit_code == 2, result.output
    assert counts(sqlite_url) == before


def test_agents_tick_delivers_and_operator_commands(
    cli: Any, sqlite_url: str, receiver: Receiver
) -> None:
    e = cli.json("webhook", "endpoint", "add", receiver.url, "--events", "tenant.*")
    secret = cli.json("webhook", "endpoint", "show", e["id"], "--reveal-secret")["secret"]
    emit(sqlite_url, 2)
    out = cli.json("agents", "tick", "dispatcher")
    assert out["done"] == 2, out
    assert all(spec_verify(secret, r.headers, r.body) for r in receiver.requests)
    rows = cli.json("webhook", "deliveries", "list", "--endpoint", e["id"], "--status", "succeeded")
    assert len(rows) == 2
    shown = cli.json("webhook", "deliveries", "show", rows[0]["id"])
    assert shown["attempt_log"][0]["status_code"] == 200
    assert shown["attempt_log"][0]["response"] == "ok"
    # replay everything: delivered ones only when asked for
    result = cli("webhook", "replay", "--endpoint", e["id"], "--status", "all", "--yes")
    assert result.exit_code == 0 and result.output.strip() == "0"
    result = cli(
        "webhook", "replay", "--endpoint", e["id"], "--status", "all", "--include-delivered",
        "--yes",
    )  # fmt: skip
    assert result.exit_code == 0 and result.output.strip() == "2"
    assert cli.json("agents", "tick", "dispatcher")["done"] == 2
    assert len(receiver.requests) == 4
    # ping
    ping = cli.json("webhook", "test", e["id"])
    assert ping["event_type"] == "webhook.ping" and ping["status"] == "succeeded"
    assert receiver.requests[-1].json["type"] == "webhook.ping"
    assert spec_verify(secret, receiver.requests[-1].headers, receiver.requests[-1].body)


def test_verify_command(cli: Any) -> None:
    from mno import signing

    secret = signing.new_secret()
    ts = str(int(time.time()))
    body = '{"type":"x","timestamp":"t","data":{}}'
    sig = signing.sign(secret, "msg_1", int(ts), body)
    ok = cli(
        "webhook",
        "verify",
        "--secret",
        secret,
        "--id",
        "msg_1",
        "--timestamp",
        ts,
        "--signature",
        f"v1,bogus {sig}",
        input=body,
    )
    assert ok.exit_code == 0, ok.output
    bad = cli(
        "webhook",
        "verify",
        "--secret",
        secret,
        "--id",
        "msg_1",
        "--timestamp",
        ts,
        "--signature",
        sig,
        input=body + " ",
    )
    assert bad.exit_code == 1
    old = str(int(time.time()) - 600)
    stale = cli(
        "webhook",
        "verify",
        "--secret",
        secret,
        "--id",
        "msg_1",
        "--timestamp",
        old,
        "--signature",
        signing.sign(secret, "msg_1", int(old), body),
        input=body,
    )
    assert stale.exit_code == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_listen_verifies_dedups_and_prints(cli: Any, sqlite_url: str, mno_env: Path) -> None:
    import httpx

    from mno import signing

    port = _free_port()
    secret = signing.new_secret()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "webhook", "listen", "--port", str(port), "--secret", secret],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(100):
            try:
                httpx.get(url, timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = '{"type":"tenant.updated","timestamp":"2026-01-01T00:00:00Z","data":{"a":1}}'
        ts = int(time.time())
        hdrs = signing.headers([secret], "evt1", ts, body)
        assert httpx.post(url, content=body, headers=hdrs).text == "ok"
        assert httpx.post(url, content=body, headers=hdrs).text == "duplicate"
        assert httpx.post(url, content=body + " ", headers=hdrs).status_code == 400
        old = signing.headers([secret], "evt2", ts - 301, body)
        assert httpx.post(url, content=body, headers=old).status_code == 400
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    lines = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert lines == [{"webhook-id": "evt1", "event": json.loads(body)}]


def test_email_rules_over_smtp_with_tenant_override(
    cli: Any, sqlite_url: str, mno_env: Path, smtp_server: Any, tmp_path: Path
) -> None:
    port, received = smtp_server
    (mno_env / "config.yaml").write_text(
        "profiles:\n  default:\n"
        f"    smtp: {{host: 127.0.0.1, port: {port}, from: hub@example.com}}\n"
    )
    assert cli("tenant", "create", "acme").exit_code == 0
    assert cli("tenant", "create", "bolt").exit_code == 0
    assert (
        cli(
            "tenant",
            "contact",
            "add",
            "acme",
            "--name",
            "Ann",
            "--email",
            "ann@acme.com",
            "--primary",
        ).exit_code
        == 0
    )
    assert (
        cli(
            "tenant",
            "contact",
            "add",
            "bolt",
            "--name",
            "Bob",
            "--email",
            "bob@bolt.io",
            "--primary",
        ).exit_code
        == 0
    )
    rule = cli.json(
        "notify",
        "rule",
        "add",
        "--events",
        "tenant.updated",
        "--email-to",
        "tenant-primary",
        "--template",
        "tenant_welcome",
    )
    assert rule["email_to"] == "tenant-primary"
    override = tmp_path / "welcome.j2"
    override.write_text(
        "Subject: Hi {{ tenant.key }} from Acme's reseller\nCustom body {{ data.key }}\n"
    )
    assert (
        cli(
            "notify", "template", "set", "tenant_welcome", "-f", str(override), "--tenant", "acme"
        ).exit_code
        == 0
    )
    assert cli("tenant", "update", "acme", "--name", "Acme Inc").exit_code == 0
    assert cli("tenant", "update", "bolt", "--name", "Bolt").exit_code == 0
    out = cli.json("agents", "tick", "dispatcher")
    assert out["done"] >= 2, out
    by_to = {m["To"]: m for m in received}
    assert set(by_to) == {"ann@acme.com", "bob@bolt.io"}
    assert by_to["ann@acme.com"]["Subject"] == "Hi acme from Acme's reseller"
    assert "Custom body acme" in by_to["ann@acme.com"].get_payload()
    assert by_to["bob@bolt.io"]["Subject"].startswith("Welcome to")


def test_email_without_smtp_retries_then_exhausts(cli: Any, sqlite_url: str) -> None:
    from mno import clock

    clock.set_now(datetime(2026, 3, 2, tzinfo=UTC))
    cli.json(
        "notify",
        "rule",
        "add",
        "--events",
        "tenant.updated",
        "--email-to",
        "ops@example.com",
        "--template",
        "tenant_welcome",
    )
    emit(sqlite_url, 1)
    from .test_delivery import tick
    from .test_retry import pending

    for _ in range(8):
        tick(sqlite_url)
        rows = pending(sqlite_url)
        if not rows:
            break
        clock.set_now(rows[0].next_attempt_at)
    assert statuses(sqlite_url) == {"exhausted": 1}
