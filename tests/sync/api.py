"""A small REST API on loopback for sync tests and the bench.

Collections of records under ``/<style>/contacts`` where style is page, offset, cursor or
link; ``updated_since`` filtering (ISO 8601), soft deletes (``is_deleted``), a
``/deleted`` endpoint, one record by id (``/<style>/contacts/<id>``), POST/PUT for
write-back, and rate limiting: with ``throttle_every`` set, every N-th request gets 429
with ``Retry-After``; requests that arrive before the announced time are counted in
``too_early``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


class Api:
    """``wall_clock`` stamps changes with the real time (as ``mno.clock`` reads it) instead
    of ticks after ``BASE_TIME``; ``order="id"`` lists in id order, as json-server and
    datasette do, instead of (updated_at, id); ``on_list`` is called before each listing
    request is answered, between the pages of a pass."""

    def __init__(
        self,
        records: int = 0,
        name_prefix: str = "c",
        *,
        wall_clock: bool = False,
        order: str = "updated",
    ) -> None:
        self.lock = threading.RLock()
        self.wall_clock = wall_clock
        self.order = order
        self.last_stamp = datetime.min.replace(tzinfo=UTC)
        self.on_list: Callable[[], None] | None = None
        self.rows: dict[str, dict[str, Any]] = {}
        self.tick = 0
        self.next_id = 1
        self.requests = 0
        self.too_early = 0
        self.throttled = 0
        self.throttle_every = 0
        self.retry_after = 1
        self.blocked_until = 0.0
        self.fail = 0  # answer 500 to this many GETs (negative: all)
        self.delay = 0.0
        self.refuse = 0  # answer this status (e.g. 401) to every GET
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.deleted_log: list[tuple[str, str]] = []
        self.gets: list[str] = []  # ids read one by one (GET /<style>/contacts/<id>)
        self.prefix = name_prefix
        self._sorted: list[dict[str, Any]] | None = None
        self._keys: list[str] = []
        self.bulk_create(records)

    # -- data ----------------------------------------------------------------------------

    def _stamp(self) -> str:
        self._sorted = None
        self.tick += 1
        if self.wall_clock:  # strictly increasing, microseconds
            at = max(datetime.now(UTC), self.last_stamp + timedelta(microseconds=1))
            self.last_stamp = at
            return at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        return (BASE_TIME + timedelta(milliseconds=self.tick)).isoformat().replace("+00:00", "Z")

    def bulk_create(self, n: int) -> None:
        with self.lock:
            for _ in range(n):
                self._create({"name": f"name {self.next_id}", "email": f"u{self.next_id}@x.test"})

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        rid = f"{self.prefix}{self.next_id}"
        self.next_id += 1
        row = {
            "id": rid,
            "name": body.get("name"),
            "email": body.get("email"),
            "phone": body.get("phone"),
            "is_deleted": False,
            "updated_at": self._stamp(),
            "fetched_at": time.time(),
        }
        self.rows[rid] = row
        return row

    def create(self, **fields: Any) -> dict[str, Any]:
        with self.lock:
            return dict(self._create(fields))

    def edit(self, rid: str, **fields: Any) -> None:
        with self.lock:
            self.rows[rid].update(fields)
            self.rows[rid]["updated_at"] = self._stamp()

    def delete(self, rid: str, soft: bool = True) -> None:
        with self.lock:
            stamp = self._stamp()
            if soft:
                self.rows[rid].update(is_deleted=True, updated_at=stamp)
            else:
                del self.rows[rid]
            self.deleted_log.append((rid, stamp))

    def listing(self, since: str | None) -> list[dict[str, Any]]:
        """Rows in (updated_at, id) order, from ``since`` on (inclusive); cached."""
        import bisect

        with self.lock:
            if self.order == "id":
                rows = sorted(self.rows.values(), key=lambda r: int(r["id"][len(self.prefix) :]))
                return [r for r in rows if not since or r["updated_at"] >= since]
            if self._sorted is None or len(self._sorted) != len(self.rows):
                rows = sorted(self.rows.values(), key=lambda r: (r["updated_at"], r["id"]))
                self._sorted, self._keys = rows, [r["updated_at"] for r in rows]
            rows, keys = self._sorted, self._keys
        if since:
            return rows[bisect.bisect_left(keys, since) :]
        return rows

    def touch_every(
        self, step: int, offset: int = 0, between: tuple[str, str] | None = None
    ) -> int:
        """Edit every ``step``-th record from the ``offset``-th (the bench's 1% change);
        with ``between`` (two ISO 8601 times), the edits are stamped evenly over that
        span, as changes made over a while."""
        with self.lock:
            ids = list(self.rows)[offset::step]
            start = end = None
            if between:
                start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in between)
            for i, rid in enumerate(ids):
                self.rows[rid]["name"] = self.rows[rid]["name"] + " (edited)"
                if start is not None and end is not None:
                    at = start + (end - start) * i / len(ids)
                    stamp = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
                    self.rows[rid]["updated_at"] = stamp
                    self._sorted = None
                else:
                    self.rows[rid]["updated_at"] = self._stamp()
            # the (updated_at, id) order is brought up to date by the write, as a
            # database index would be, rather than by the next reader
            self.listing(None)
        return len(ids)


def make_handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
            with api.lock:
                data = b"" if body is None else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _gate(self) -> bool:
            """Rate limiting and injected failures; True when the request was answered."""
            with api.lock:
                api.requests += 1
                now = time.monotonic()
                if now < api.blocked_until:
                    api.too_early += 1
                    api.throttled += 1
                    wait = max(1, int(api.blocked_until - now + 0.999))
                    throttle = str(wait)
                elif api.throttle_every and api.requests % api.throttle_every == 0:
                    api.blocked_until = now + api.retry_after
                    api.throttled += 1
                    throttle = str(api.retry_after)
                else:
                    throttle = ""
                fail = api.fail != 0
                if api.fail > 0:
                    api.fail -= 1
            if api.refuse:
                self._send(api.refuse, {"error": "unauthorized"})
                return True
            if throttle:
                self._send(429, {"error": "slow down"}, {"Retry-After": throttle})
                return True
            if fail:
                self._send(500, {"error": "boom"})
                return True
            if api.delay:
                time.sleep(api.delay)
            return False

        def do_GET(self) -> None:  # noqa: N802
            if self._gate():
                return
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            parts = url.path.strip("/").split("/")
            if parts[-1] == "deleted":
                since = q.get("since")
                ids = [rid for rid, at in api.deleted_log if not since or at >= since]
                self._send(200, {"deleted": [{"id": i} for i in ids]})
                return
            if len(parts) == 3:  # one record by id: /<style>/contacts/<id>
                with api.lock:
                    api.gets.append(parts[2])
                    row = api.rows.get(parts[2])
                    found = dict(row) if row is not None else None
                self._send(404 if found is None else 200, found or {"error": "not found"})
                return
            style = parts[0]
            if api.on_list is not None and style != "stats":
                api.on_list()
            since = q.get("updated_since")
            rows = api.listing(since)
            limit = int(q.get("limit", 100))
            if style == "page":
                page = int(q.get("page", 1))
                chunk = rows[(page - 1) * limit : page * limit]
                self._send(200, {"data": chunk, "meta": {"total": len(rows)}})
            elif style == "offset":
                off = int(q.get("offset", 0))
                self._send(200, {"items": rows[off : off + limit], "total": len(rows)})
            elif style == "stats":
                self._send(200, {"requests": api.requests, "too_early": api.too_early})
            elif style == "cursor":
                off = int(q.get("cursor") or 0)
                chunk = rows[off : off + limit]
                nxt = str(off + limit) if off + limit < len(rows) else None
                self._send(200, {"results": chunk, "paging": {"next": nxt}})
            elif style == "link":
                off = int(q.get("offset", 0))
                chunk = rows[off : off + limit]
                headers = {}
                if off + limit < len(rows):
                    nq = dict(q, offset=str(off + limit))
                    host = self.headers.get("Host")
                    headers["Link"] = f'<http://{host}{url.path}?{urlencode(nq)}>; rel="next"'
                self._send(200, chunk, headers)
            else:
                self._send(404, {"error": "no such style"})

        def _body(self) -> dict[str, Any]:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            if self.path.startswith("/admin/touch"):
                span = body.get("between")
                n = api.touch_every(
                    int(body.get("step", 100)),
                    int(body.get("offset", 0)),
                    (str(span[0]), str(span[1])) if span else None,
                )
                self._send(200, {"touched": n})
                return
            with api.lock:
                api.requests += 1
                api.writes.append(("POST", "", body))
                row = dict(api._create(body))
            self._send(201, row)

        def do_PUT(self) -> None:  # noqa: N802
            body = self._body()
            rid = urlparse(self.path).path.rstrip("/").split("/")[-1]
            with api.lock:
                api.requests += 1
                api.writes.append(("PUT", rid, body))
                if rid not in api.rows:
                    self._send(404, {"error": "not found"})
                    return
                api.rows[rid].update(
                    {k: v for k, v in body.items() if k in ("name", "email", "phone")}
                )
                api.rows[rid]["updated_at"] = api._stamp()
                row = dict(api.rows[rid])
            self._send(200, row)

        def do_DELETE(self) -> None:  # noqa: N802
            rid = urlparse(self.path).path.rstrip("/").split("/")[-1]
            with api.lock:
                api.requests += 1
                api.writes.append(("DELETE", rid, {}))
                if rid in api.rows:
                    api.rows[rid].update(is_deleted=True, updated_at=api._stamp())
            self._send(204)

    return Handler


class Server:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def connector_yaml(
    name: str,
    app: str,
    base_url: str,
    style: str = "page",
    size: int = 100,
    deleted: str = "flag",
    rate: int = 1000,
    lookback: str | None = None,
) -> str:
    pag = {
        "page": "type: page\n      param: page\n      size_param: limit",
        "offset": "type: offset\n      param: offset\n      size_param: limit",
        "cursor": (
            "type: cursor\n      param: cursor\n      size_param: limit\n"
            "      next_path: paging.next"
        ),
        "link": "type: link\n      size_param: limit",
    }[style]
    records = {"page": "data", "offset": "items", "cursor": "results", "link": ""}[style]
    dele = (
        "deleted:\n      flag: is_deleted"
        if deleted == "flag"
        else (
            "deleted:\n      path: /page/contacts/deleted\n      param: since\n"
            "      records: deleted"
        )
    )
    return f"""name: {name}
app: {app}
base_url: {base_url}
auth:
  type: bearer
  token: secret:{name.upper().replace("-", "_")}_TOKEN
rate_limit:
  requests: {rate}
  per_seconds: 1
entities:
  - canonical: contact
    list:
      path: /{style}/contacts
    records: "{records}"
    pagination:
      {pag}
      size: {size}
    incremental:
      param: updated_since
      format: iso8601{f"{chr(10)}      lookback: {lookback}" if lookback else ""}
    id: id
    updated_at: updated_at
    {dele}
    mapping:
      name: name
      email:
        source: email
        transform: lower
      phone: phone
      fetched_at: fetched_at
    ignore_fields: [fetched_at]
    push:
      create:
        method: POST
        path: /{style}/contacts
      update:
        method: PUT
        path: /{style}/contacts/{{id}}
      delete:
        method: DELETE
        path: /{style}/contacts/{{id}}
      body:
        name: name
        email: email
        phone: phone
"""


def main() -> None:
    """``python -m tests.sync.api RECORDS PORT_FILE``: serve in this process (the bench)."""
    import sys

    api = Api(records=int(sys.argv[1]))
    server = Server(api)
    with open(sys.argv[2], "w") as fh:
        fh.write(server.url)
    server.serve_forever()


if __name__ == "__main__":
    main()
