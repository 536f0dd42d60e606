"""Commands that printed data in one fixed form now take -o as well."""

from __future__ import annotations

import json
import time
from typing import Any


def test_webhook_verify_answers_in_json(cli: Any) -> None:
    from mno import signing

    secret = signing.new_secret()
    ts = str(int(time.time()))
    body = '{"type":"x","timestamp":"t","data":{}}'
    sig = signing.sign(secret, "msg_1", int(ts), body)
    args = ("webhook", "verify", "--secret", secret, "--id", "msg_1", "--timestamp", ts)
    ok = cli(*args, "--signature", sig, "-o", "json", input=body)
    assert (ok.exit_code, json.loads(ok.stdout)) == (0, {"valid": True})
    bad = cli(*args, "--signature", sig, "-o", "json", input=body + " ")
    assert bad.exit_code == 1
    answer = json.loads(bad.stdout)
    assert answer["valid"] is False and answer["reason"]
    # the table form is unchanged
    assert cli(*args, "--signature", sig, input=body).stdout == "valid\n"


def test_notify_template_show_in_json(cli: Any, sqlite_url: str) -> None:
    shown = cli.json("notify", "template", "show", "invoice_issued")
    assert shown["name"] == "invoice_issued" and shown["tenant"] is None
    assert shown["subject"].startswith("Invoice ") and "\n" in shown["body"]
    text = cli("notify", "template", "show", "invoice_issued").stdout
    assert text == f"Subject: {shown['subject']}\n{shown['body']}"
