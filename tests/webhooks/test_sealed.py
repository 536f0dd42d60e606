"""Sealed event values: the store keeps ``{"$encrypted": token}``; the delivered, signed
body carries the plain value (the one-time provisioning callback secret)."""

from __future__ import annotations

import json
from pathlib import Path

from mno import crypto

from .conftest import Receiver
from .test_delivery import add_endpoint, spec_verify, tick


def test_sealed_values_are_revealed_only_in_the_signed_body(
    sqlite_url: str, receiver: Receiver
) -> None:
    from mno.store import outbox
    from mno.store.db import session_scope

    _, secret = add_endpoint(sqlite_url, receiver.url, events="tenant.*")
    with session_scope(sqlite_url) as s:
        outbox.emit(
            s,
            "tenant.provisioning_requested",
            {"contextId": "c1", "callbackSecret": crypto.sealed("s3cret-value")},
        )
    assert tick(sqlite_url).done == 1
    (req,) = receiver.requests
    assert spec_verify(secret, req.headers, req.body)
    assert req.json["data"] == {"contextId": "c1", "callbackSecret": "s3cret-value"}
    db_file = Path(sqlite_url.removeprefix("sqlite:///"))
    for path in (db_file, Path(f"{db_file}-wal")):
        assert not path.exists() or b"s3cret-value" not in path.read_bytes()
    with session_scope(sqlite_url, write=False) as s:
        (event,) = outbox.list_events(s, event_type="tenant.provisioning_requested")
        assert "s3cret-value" not in json.dumps(event.payload)
