"""End-to-end delivery against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from mno import clock

from .conftest import Receiver


def spec_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Independent Standard Webhooks check, written from the spec text: the key is the
    base64 after ``whsec_``; the content is ``id.timestamp.body``; each space-separated
    ``v1,<base64>`` entry is an HMAC-SHA256 candidate."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for part in headers["webhook-signature"].split(" "):
        version, sig = part.split(",", 1)
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


def ctx(url: str, **options: Any) -> Any:
    from mno.agents import dispatcher
    from mno.agents.base import TickContext

    return TickContext(
        agent="dispatcher",
        db_url=url,
        batch_size=200,
        concurrency=8,
        options=dict(dispatcher.DEFAULT_OPTIONS) | options,
    )


def add_endpoint(url: str, target: str, **kw: Any) -> tuple[str, str]:
    from mno import crypto
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    with session_scope(url) as s:
        e = endpoints.add(s, target, **kw)
        return str(e.id), crypto.decrypt(e.secret_enc)


def emit(url: str, n: int, event_type: str = "tenant.updated", tenant_id: Any = None) -> None:
    from mno.store import outbox
    from mno.store.db import session_scope

    with session_scope(url) as s:
        outbox.emit_many(s, [(event_type, {"i": i}, tenant_id) for i in range(n)])


def tick(url: str, **options: Any) -> Any:
    from mno.agents import dispatcher

    return dispatcher.tick(ctx(url, **options))


def statuses(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from mno.store.db import session_scope
    from mno.store.models.webhooks import WebhookDelivery

    t = WebhookDelivery.__table__
    with session_scope(url, write=False) as s:
        return dict(s.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status)).all())


def test_signed_delivery_matches_the_spec(store_url: str, receiver: Receiver) -> None:
    eid, secret = add_endpoint(store_url, receiver.url, events="tenant.*")
    emit(store_url, 3)
    emit(store_url, 1, "gitops.applied")  # filtered out
    res = tick(store_url)
    assert res.done == 3
    assert len(receiver.requests) == 3
    for req in receiver.requests:
        assert spec_verify(secret, req.headers, req.body)
        assert req.headers["content-type"] == "application/json"
        assert req.headers["user-agent"].startswith("mno/")
        body = req.json
        assert set(body) == {"type", "timestamp", "data"}
        assert body["type"] == "tenant.updated"
        assert req.body == json.dumps(body, separators=(",", ":")).encode()
    assert sorted(r.json["data"]["i"] for r in receiver.requests) == [0, 1, 2]
    # a second pass sends nothing again
    assert tick(store_url).claimed == 0
    assert len(receiver.requests) == 3
    assert statuses(store_url) == {"succeeded": 3}


def test_tampered_signature_fails_the_independent_check(
    sqlite_url: str, receiver: Receiver
) -> None:
    _, secret = add_endpoint(sqlite_url, receiver.url, events="tenant.*")
    emit(sqlite_url, 1)
    tick(sqlite_url)
    req = receiver.requests[0]
    assert spec_verify(secret, req.headers, req.body)
    assert not spec_verify(secret, req.headers, req.body + b" ")
    from mno import signing

    assert not spec_verify(signing.new_secret(), req.headers, req.body)


def test_rotation_sends_both_signatures_during_grace(sqlite_url: str, receiver: Receiver) -> None:
    from mno import crypto
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    eid, old = add_endpoint(sqlite_url, receiver.url, events="tenant.*")
    with session_scope(sqlite_url) as s:
        new = crypto.decrypt(endpoints.rotate_secret(s, eid, "24h").secret_enc)
    emit(sqlite_url, 1)
    tick(sqlite_url)
    req = receiver.requests[-1]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    assert spec_verify(old, req.headers, req.body) and spec_verify(new, req.headers, req.body)
    clock.set_now(datetime.now(UTC) + timedelta(hours=25))
    emit(sqlite_url, 1)
    tick(sqlite_url)
    req = receiver.requests[-1]
    assert len(req.headers["webhook-signature"].split(" ")) == 1
    assert spec_verify(new, req.headers, req.body) and not spec_verify(old, req.headers, req.body)


def test_secret_is_not_stored_in_plain_text(sqlite_url: str) -> None:
    from pathlib import Path

    _, secret = add_endpoint(sqlite_url, "http://127.0.0.1:9/x")
    raw = Path(sqlite_url.split("///", 1)[1]).read_bytes()
    assert secret.encode() not in raw
    assert secret.split("_", 1)[1].encode() not in raw


def test_attempt_keeps_4kb_of_the_response(sqlite_url: str, receiver: Receiver) -> None:
    from mno.store.db import session_scope
    from mno.webhooks import delivery_queue

    receiver.respond = lambda req: (500, {}, b"x" * 10_000)
    add_endpoint(sqlite_url, receiver.url, events="tenant.*")
    emit(sqlite_url, 1)
    tick(sqlite_url)
    with session_scope(sqlite_url, write=False) as s:
        (row,) = delivery_queue.page_deliveries(s, status="failed").rows
        shown = delivery_queue.show(s, row["id"])
    (attempt,) = shown["attempt_log"]
    assert attempt["status_code"] == 500 and attempt["error_class"] == "http_500"
    assert len(attempt["response"]) == 4096
    assert attempt["latency_ms"] > 0


def test_listen_forwards_verified_events(receiver: Receiver) -> None:
    import threading

    import httpx

    from mno import signing
    from mno.webhooks import listen

    secret = signing.new_secret()
    server = listen.make_server("127.0.0.1", 0, secret, forward=receiver.url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        body = '{"type":"a.b","timestamp":"t","data":{}}'
        import time as _time

        hdrs = signing.headers([secret], "m1", int(_time.time()), body)
        assert httpx.post(url, content=body, headers=hdrs).status_code == 200
        assert (
            httpx.post(
                url, content=body, headers={**hdrs, "webhook-signature": "v1,AAAA"}
            ).status_code
            == 400
        )
    finally:
        server.shutdown()
        server.server_close()
    (req,) = receiver.requests
    assert req.body == body.encode() and req.headers["webhook-id"] == "m1"


def test_events_emitted_while_an_endpoint_is_disabled_are_not_delivered(
    store_url: str, receiver: Receiver
) -> None:
    from mno.store.db import session_scope
    from mno.webhooks import endpoints

    eid, _ = add_endpoint(store_url, receiver.url, events="tenant.*")
    emit(store_url, 2)
    tick(store_url)
    assert len(receiver.ids()) == 2
    with session_scope(store_url) as s:
        endpoints.set_enabled(s, eid, False)
    emit(store_url, 3)  # while disabled
    tick(store_url)
    with session_scope(store_url) as s:
        endpoints.set_enabled(s, eid, True)
    emit(store_url, 1)
    tick(store_url)
    assert len(receiver.ids()) == 3  # the two before and the one after, none of the three
    assert statuses(store_url) == {"succeeded": 3}
