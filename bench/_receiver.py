"""The benches' webhook receiver protocol: HTTP/1.1 keep-alive requests parsed by hand.

A bench's receiver runs in its own process and must cost as little CPU as possible per
request, so it is a bare asyncio protocol rather than a web framework. Subclasses answer
each complete request in ``handle(request_line, body)``.
"""

from __future__ import annotations

import asyncio
from typing import Any


class RequestProtocol(asyncio.Protocol):
    """Splits the byte stream into requests (``Content-Length`` bodies) for ``handle``."""

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            body = self.buf[head_end + 4 : end]
            self.buf = self.buf[end:]
            self.handle(head.split(" ", 2), body)

    def handle(self, line: list[str], body: bytes) -> None:
        raise NotImplementedError
