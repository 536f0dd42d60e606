"""``mno.remote.client.HubClient`` against a small HTTP server on loopback that fails on
purpose: retries, the Idempotency-Key they share, problem+json mapping."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mno.errors import BadInput, Conflict, Forbidden, MnoError, NotFound, Unavailable
from mno.remote.client import HubClient


class Flaky:
    """Answers each request with the next (status, body) of ``script``; records requests."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []


@pytest.fixture
def flaky() -> Iterator[tuple[str, Flaky]]:
    state = Flaky()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.seen.append((self.command, self.path, dict(self.headers), body))
            status, payload = state.script.pop(0) if state.script else (200, {})
            raw = json.dumps(payload).encode()
            self.send_response(status)
            kind = "application/problem+json" if status >= 400 else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            if status == 429:
                self.send_header("Retry-After", "7")
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def problem(status: int, detail: str) -> tuple[int, dict[str, Any]]:
    return status, {"type": "about:blank", "title": "x", "status": status, "detail": detail}


def test_a_retried_post_sends_the_same_idempotency_key(flaky: tuple[str, Flaky]) -> None:
    url, state = flaky
    state.script = [problem(503, "busy"), problem(502, "bad gateway"), (201, {"key": "acme"})]
    with HubClient(url, "mnout_secret", backoff=0) as hub:
        assert hub.post("/v1/hub/tenants", {"key": "acme"}) == {"key": "acme"}
    keys = [headers.get("Idempotency-Key") for _, _, headers, _ in state.seen]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1
    assert all(h["Authorization"] == "Bearer mnout_secret" for _, _, h, _ in state.seen)
    with HubClient(url, "mnout_secret", backoff=0) as hub:
        hub.post("/v1/hub/tenants", {"key": "globex"})
    assert state.seen[-1][2]["Idempotency-Key"] != keys[0]  # a new call, a new key


def test_patch_is_not_retried_and_gives_up_after_the_retries(flaky: tuple[str, Flaky]) -> None:
    url, state = flaky
    state.script = [problem(503, "busy")]
    with HubClient(url, "t", backoff=0) as hub, pytest.raises(Unavailable):
        hub.patch("/v1/hub/tenants/acme", {"name": "A"})
    assert len(state.seen) == 1 and "Idempotency-Key" not in state.seen[0][2]
    state.script = [problem(503, "busy")] * 3
    with HubClient(url, "t", backoff=0, retries=2) as hub, pytest.raises(Unavailable) as info:
        hub.get("/v1/hub/tenants")
    assert len(state.seen) == 4 and info.value.exit_code == 3


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (404, NotFound, 1),
        (401, Forbidden, 1),
        (403, Forbidden, 1),
        (409, Conflict, 1),
        (412, Conflict, 1),
        (422, BadInput, 2),
        (429, MnoError, 1),
    ],
)
def test_problems_become_the_domain_errors(
    flaky: tuple[str, Flaky], status: int, error: type[MnoError], code: int
) -> None:
    url, state = flaky
    state.script = [problem(status, "tenant nope not found")]
    with HubClient(url, "t", backoff=0) as hub, pytest.raises(error) as info:
        hub.get("/v1/hub/tenants/nope")
    assert info.value.message == "tenant nope not found" and info.value.exit_code == code
    if status == 429:
        assert "7" in str(info.value)


def test_bad_server_and_missing_token_are_bad_input() -> None:
    with pytest.raises(BadInput):
        HubClient("ftp://hub.example", "t")
    with pytest.raises(BadInput):
        HubClient("http://127.0.0.1:1", "")
    assert "mnout_hidden" not in repr(HubClient("http://127.0.0.1:1", "mnout_hidden"))
