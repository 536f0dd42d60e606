"""Webhook fixtures: a master key, loopback allowed, and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def webhook_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from cryptography.fernet import Fernet

    from mno.webhooks import http_sender

    monkeypatch.setenv("MNO_MASTER_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("MNO_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8")
    http_sender.reset()
    yield
    http_sender.reset()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # respond(req) -> (status, headers, body); default 200
    respond: Callable[[Received], tuple[int, dict[str, str], bytes]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.requests]


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    rec = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("content-length") or 0)
            req = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(n)
            )
            with rec.lock:
                rec.requests.append(req)
            status, hdrs, body = rec.respond(req) if rec.respond else (200, {}, b"ok")
            self.send_response(status)
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    return rec, server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec, server = start_receiver()
    yield rec
    server.shutdown()
    server.server_close()
