"""``Idempotency-Key`` on Hub API POSTs, as Stripe does.

The key's row (credential, key, request hash) is inserted in the same transaction as the
write the request makes, and the first response is stored on it before the commit. So:

- a retry with the same key and the same request gets the first response again (same
  status and body, header ``Idempotent-Replayed: true``) and writes nothing;
- the same key with another request (method, path, query or body) is refused 422;
- concurrent requests with one key make one write: the unique (credential, key) row
  lets one transaction commit; the others find its row and replay its response;
- a request the domain refuses (4xx) rolls back with its write, key row included, so a
  corrected retry with the same key may still succeed.

Keys are scoped to the credential (a personal token or an app key), never shared. A
secret shown once (an invite's token) is not kept with the stored answer: its replay
carries ``null`` in that field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Header, Request, Response
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from sqlmodel import select

from mno.access.scopes import Principal
from mno.api import threads
from mno.api.errors import ApiError
from mno.store.db import session_scope
from mno.store.models.hub import IdempotencyKey

if TYPE_CHECKING:
    from sqlmodel import Session

KEY_MAX = 255
ATTEMPTS = 3

IdempotencyHeader = Header(
    default=None,
    alias="Idempotency-Key",
    min_length=1,
    max_length=KEY_MAX,
    description="Repeat a POST safely: the same key returns the first response.",
)

Work = Callable[["Session"], tuple[BaseModel, str | None]]
"""A write: returns the response model and the ``Location`` of what it created."""


@dataclass
class Answer:
    status: int
    body: str
    location: str | None
    replayed: bool = False

    def response(self, headers: dict[str, str] | None = None) -> Response:
        out = dict(headers or {})
        if self.location:
            out["Location"] = self.location
        if self.replayed:
            out["Idempotent-Replayed"] = "true"
        return Response(
            self.body, status_code=self.status, media_type="application/json", headers=out
        )


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    """The fingerprint a retry must match: method, path, query and the body (JSON bodies
    compared by value, so key order and spacing do not matter)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = body.decode("utf-8", "replace")
    raw = f"{method} {path}?{query}\n{canonical}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _dump(model: BaseModel) -> str:
    return model.model_dump_json()


def _kept(model: BaseModel, secret_fields: tuple[str, ...]) -> str:
    """The answer to store: ``model`` with its once-shown secrets emptied."""
    if not secret_fields:
        return _dump(model)
    return model.model_copy(update=dict.fromkeys(secret_fields)).model_dump_json()


def _stored(credential: str, key: str) -> IdempotencyKey | None:
    with session_scope(write=False) as s:
        return s.exec(
            select(IdempotencyKey).where(
                IdempotencyKey.credential == credential, IdempotencyKey.key == key
            )
        ).first()


def _replay(row: IdempotencyKey, fingerprint: str) -> Answer:
    if row.request_hash != fingerprint:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request",
        )
    return Answer(row.status, row.body, row.location, replayed=True)


def execute(
    credential: str,
    key: str | None,
    fingerprint: str,
    status: int,
    work: Work,
    secret_fields: tuple[str, ...] = (),
) -> Answer:
    """Run ``work`` in one transaction, under ``key`` when given (see the module)."""
    if key is None:
        with session_scope() as s:
            model, location = work(s)
            return Answer(status, _dump(model), location)
    for attempt in range(ATTEMPTS):
        row = _stored(credential, key)
        if row is not None:
            return _replay(row, fingerprint)
        try:
            with session_scope() as s:
                mine = IdempotencyKey(credential=credential, key=key, request_hash=fingerprint)
                s.add(mine)
                s.flush()  # a concurrent twin waits here (PostgreSQL) or fails at commit
                model, location = work(s)
                mine.status = status
                mine.body = _kept(model, secret_fields)
                mine.location = location
                s.add(mine)
                return Answer(status, _dump(model), location)
        except sa_exc.IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def run(
    request: Request,
    principal: Principal | str,
    key: str | None,
    status: int,
    work: Work,
    headers: dict[str, str] | None = None,
    secret_fields: tuple[str, ...] = (),
) -> Response:
    """``execute`` on a store thread; the response, replayed or first. ``principal`` may
    be the credential itself (a route without a principal names what keys its keys)."""
    body = await request.body()
    fingerprint = request_hash(request.method, request.url.path, request.url.query, body)
    credential = principal if isinstance(principal, str) else principal.credential
    answer = await threads.run(execute, credential, key, fingerprint, status, work, secret_fields)
    return answer.response(headers)


def describe() -> dict[str, Any]:
    """The OpenAPI header of a replayed answer."""
    return {
        "Idempotent-Replayed": {
            "description": "`true` when this is the stored first response to the key",
            "schema": {"type": "string"},
        }
    }
