"""``mno webhook listen``: a local Standard Webhooks receiver for developers and tests.

It verifies each request's signature, refuses timestamps more than 5 minutes off,
answers duplicates of a ``webhook-id`` already seen with 200 without printing them again,
then prints one JSON line per event or forwards the body (with its headers) to a URL.
httpx is imported only when a body is forwarded.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from mno import signing

DEDUP_SIZE = 100_000


def make_server(
    host: str, port: int, secret: str, *, forward: str | None = None, out: TextIO | None = None
) -> ThreadingHTTPServer:
    signing.secret_key(secret)  # malformed secrets fail now
    seen: OrderedDict[str, None] = OrderedDict()
    lock = threading.Lock()
    stream = out or sys.stdout

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            hdrs = {k.lower(): v for k, v in self.headers.items()}
            try:
                msg_id = signing.verify_headers(secret, hdrs, body)
            except signing.VerificationError as exc:
                self._reply(400, f"invalid: {exc}")
                return
            with lock:
                duplicate = msg_id in seen
                seen[msg_id] = None
                if len(seen) > DEDUP_SIZE:
                    seen.popitem(last=False)
            if duplicate:
                self._reply(200, "duplicate")
                return
            if forward:
                import httpx

                try:
                    resp = httpx.post(
                        forward,
                        content=body,
                        timeout=15,
                        headers={k: v for k, v in hdrs.items() if k.startswith("webhook-")}
                        | {"content-type": "application/json"},
                    )
                    self._reply(resp.status_code, resp.text[:4096])
                except httpx.HTTPError as exc:
                    self._reply(502, f"forward failed: {exc}")
                return
            try:
                event = json.loads(body)
            except ValueError:
                event = body.decode(errors="replace")
            with lock:
                stream.write(json.dumps({"webhook-id": msg_id, "event": event}) + "\n")
                stream.flush()
            self._reply(200, "ok")

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
