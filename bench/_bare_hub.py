"""The fair floor of the Hub API tenant reads: a bare Starlette app doing the same queries.

``GET /tenants/{key}`` and ``GET /tenants?limit=&cursor=`` answer as ``/v1/hub/tenants``
does for a platform operator: the bearer token and its user (by the token's SHA-256), the
user's role in the system tenant, then the tenant (or a keyset page of tenants by key)
with its domains and parent key. Plain SQL on a SQLAlchemy engine with the same pool
settings, run in Starlette's thread pool; no validation, no models, no middleware.

    python bench/_bare_hub.py PORT DB_URL
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TOKEN = sa.text(
    "SELECT t.scopes, t.expires_at, t.revoked_at, u.id, u.status FROM access_user_token t "
    "JOIN access_user u ON u.id = t.user_id WHERE t.token_hash = :h"
)
OPERATOR = sa.text(
    "SELECT m.role FROM access_membership m JOIN tenant s ON s.id = m.tenant_id "
    "WHERE s.key = 'system' AND m.user_id = :u"
)
COLUMNS = (
    "id, key, name, tier, status, status_reason, parent_id, currency, timezone, address, "
    "city, zip, region, country, in_arrears, metadata, resources, created_at, updated_at"
)
ONE = sa.text(f"SELECT {COLUMNS} FROM tenant WHERE key = :k")
PAGE = sa.text(
    f"SELECT {COLUMNS} FROM tenant WHERE key != 'system' AND key > :after ORDER BY key LIMIT :n"
)
DOMAINS = sa.text(
    "SELECT tenant_id, domain FROM tenant_domain WHERE tenant_id = ANY(:ids) ORDER BY domain"
)
PARENTS = sa.text("SELECT id, key FROM tenant WHERE id = ANY(:ids)")


def _principal(conn: sa.Connection, header: str) -> bool:
    secret = header.partition(" ")[2].strip()
    row = conn.execute(TOKEN, {"h": hashlib.sha256(secret.encode()).hexdigest()}).first()
    if row is None or row.revoked_at is not None or row.expires_at <= datetime.now(UTC):
        return False
    return conn.execute(OPERATOR, {"u": row.id}).first() is not None


def _views(conn: sa.Connection, rows: list[Any]) -> list[dict[str, Any]]:
    ids = [r.id for r in rows]
    domains: dict[Any, list[str]] = {}
    for tid, domain in conn.execute(DOMAINS, {"ids": ids}):
        domains.setdefault(tid, []).append(domain)
    parent_ids = [r.parent_id for r in rows if r.parent_id]
    parents = dict(conn.execute(PARENTS, {"ids": parent_ids}).all()) if parent_ids else {}
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["id"] = str(d["id"])
        d["parent"] = parents.get(d.pop("parent_id"))
        d["domains"] = domains.get(r.id, [])
        d["created_at"] = d["created_at"].isoformat()
        d["updated_at"] = d["updated_at"].isoformat()
        out.append(d)
    return out


def build(url: str) -> Starlette:
    engine = sa.create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=False)

    def one(header: str, key: str) -> tuple[int, Any]:
        with engine.connect() as conn:
            if not _principal(conn, header):
                return 401, {"detail": "unauthorized"}
            row = conn.execute(ONE, {"k": key}).first()
            if row is None:
                return 404, {"detail": f"tenant {key} not found"}
            return 200, _views(conn, [row])[0]

    def page(header: str, after: str, limit: int) -> tuple[int, Any]:
        with engine.connect() as conn:
            if not _principal(conn, header):
                return 401, {"detail": "unauthorized"}
            rows = list(conn.execute(PAGE, {"after": after, "n": limit + 1}))
            more = len(rows) > limit
            rows = rows[:limit]
            return 200, {
                "tenants": _views(conn, rows),
                "next": rows[-1].key if more else None,
            }

    async def get_one(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        status, body = await run_in_threadpool(one, header, request.path_params["key"])
        return Response(json.dumps(body), status, media_type="application/json")

    async def get_page(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        after = request.query_params.get("cursor", "")
        limit = int(request.query_params.get("limit", "100"))
        status, body = await run_in_threadpool(page, header, after, limit)
        return Response(json.dumps(body), status, media_type="application/json")

    return Starlette(routes=[Route("/tenants/{key}", get_one), Route("/tenants", get_page)])


if __name__ == "__main__":
    import os

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
