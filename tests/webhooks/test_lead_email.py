"""The lead verification email on the notification channel: queued with the lead, sent by
the dispatcher over SMTP (aiosmtpd) with retries, the code sealed and never in the outbox."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mno import clock

from .conftest import Receiver
from .test_delivery import add_endpoint, statuses, tick
from .test_retry import pending

LEAD = {"email": "ann@acme.com", "first_name": "Ann", "last_name": "Lee", "company": "Acme"}


def _smtp_profile(home: Path, port: int) -> None:
    (home / "config.yaml").write_text(
        "profiles:\n  default:\n"
        f"    smtp: {{host: 127.0.0.1, port: {port}, from: hub@example.com}}\n"
    )


def _create_lead(url: str) -> str:
    """The new lead's id; its code is not returned (it was queued for email)."""
    from mno.store.db import session_scope
    from mno.tenancy import leads

    with session_scope(url) as s:
        created = leads.create(s, **LEAD)
        assert created.emailed and created.verification_code is None
        return str(created.lead.id)


def _store_text(url: str) -> str:
    """Every row of every table, as text."""
    from sqlmodel import SQLModel

    from mno.store.db import session_scope

    parts = []
    with session_scope(url, write=False) as s:
        for table in SQLModel.metadata.sorted_tables:
            parts.append(repr(s.execute(sa.select(table)).all()))
    return "\n".join(parts)


def _code(message: Any) -> str:
    match = re.search(r"code is: (\S+)", message.get_payload())
    assert match, message.get_payload()
    return match.group(1)


def test_lead_email_goes_through_the_dispatcher_and_the_code_is_never_stored_plain(
    store_url: str, mno_env: Path, smtp_server: Any, receiver: Receiver
) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import leads

    port, received = smtp_server
    _smtp_profile(mno_env, port)
    add_endpoint(store_url, receiver.url, events="lead.*")  # webhooks see lead events too
    lead_id = _create_lead(store_url)
    assert received == []  # nothing is sent inside the creating transaction
    (direct,) = pending(store_url)  # queued with the lead; webhooks come at fan-out
    assert direct.channel == "direct_email" and direct.event_type == "lead.created"
    assert '"$encrypted"' in direct.body
    tick(store_url)
    assert statuses(store_url) == {"succeeded": 2}
    (message,) = received
    assert message["To"] == "ann@acme.com" and message["From"] == "hub@example.com"
    assert message["Subject"] == "Confirm your email address"  # the built-in template
    assert "Hello Ann," in message.get_payload()
    code = _code(message)
    # the code: in the email only; never in the store, the outbox or a webhook body
    assert code not in _store_text(store_url)
    (hook,) = receiver.requests
    assert hook.json["type"] == "lead.created"
    assert code not in hook.body.decode() and "$encrypted" not in hook.body.decode()
    with session_scope(store_url, write=False) as s:
        body = s.execute(
            sa.text("select body from webhook_delivery where channel = 'direct_email'")
        ).scalar_one()
    assert "$encrypted" not in body and json.loads(body)["context"]["code"] == "[sent]"
    with session_scope(store_url) as s:
        assert leads.verify(s, lead_id, code).status == "verified"


def test_lead_email_uses_the_overridden_template_and_retries_until_smtp_answers(
    sqlite_url: str, mno_env: Path, smtp_server: Any
) -> None:
    import socket

    from mno.notify import templates
    from mno.store.db import session_scope

    port, received = smtp_server
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    _smtp_profile(mno_env, closed)
    with session_scope(sqlite_url) as s:
        templates.set_override(
            s,
            "lead_verification",
            "Subject: Your Acme Hub code\nHi {{ data.first_name }}, your code is: {{ code }}\n"
            "Valid {{ ttl_hours }} h.\n",
            None,
        )
    _create_lead(sqlite_url)
    tick(sqlite_url)
    (row,) = pending(sqlite_url)
    assert row.last_status == "failed" and "cannot send email" in row.last_error
    assert row.attempts == 1 and '"$encrypted"' in row.body  # kept sealed for the retry
    _smtp_profile(mno_env, port)  # the mail server is back
    clock.set_now(row.next_attempt_at)
    tick(sqlite_url)
    assert statuses(sqlite_url) == {"succeeded": 1}
    (message,) = received
    assert message["Subject"] == "Your Acme Hub code"
    assert message.get_payload().startswith("Hi Ann, your code is: ")
    assert "Valid 24 h." in message.get_payload()


def test_without_smtp_the_code_is_returned_once_and_nothing_is_queued(sqlite_url: str) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import leads

    with session_scope(sqlite_url) as s:
        created = leads.create(s, **LEAD)
    assert not created.emailed and created.verification_code
    assert statuses(sqlite_url) == {}
