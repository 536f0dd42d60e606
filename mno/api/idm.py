"""IDM: may this user token access this tenant (and instance) for this action?

An app may ask only about its customers (a live Nex instance of it or a live
subscription to it) and about the tenant that owns it; any other tenant is refused with
403 and the reason (``mno.access.customers.may_ask``).

Answers are cached in-process for ``api.authorize_cache`` (default 5s). The cache is
dropped as soon as the host's access stamp moves (see ``mno.access.revocation``), and
an answer computed while the stamp moved is not kept, so a cached answer never outlives
a revocation made on the same host; other hosts drop theirs when the change's wake-up
arrives (``revocation.listen``, started by every ``mno serve`` worker).

A refusal because the app may not ask about the tenant (403) is cached the same way per
(app, tenant), so the half of a realistic mix that asks about other tenants does not
reach the store each time; a new customer relation (an instance, a subscription) is seen
within ``api.authorize_cache``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mno import clock
from mno.access import customers, revocation, roles, secrets, tokens
from mno.access.check import evaluate
from mno.api import auth, config, threads
from mno.api.errors import WRITE_ERRORS, ApiError, ApiRoute, errors
from mno.errors import BadInput, NotFound
from mno.sso import oidc_tokens
from mno.store.db import session_scope
from mno.tenancy import tenants

Action = Literal[
    "read",
    "sync",
    "open",
    "invite",
    "purchase",
    "manage_members",
    "manage_instances",
    "manage_teams",
    "manage_billing",
    "update_tenant",
    "delete_tenant",
]
assert set(get_args(Action)) == set(roles.ACTIONS)

router = APIRouter(route_class=ApiRoute, tags=["idm"])

_cache: dict[tuple[Any, ...], tuple[float, bytes]] = {}
_refused: dict[tuple[Any, str], tuple[float, str]] = {}  # (app id, tenant): (until, reason)
_stamp: tuple[int, bytes] | None = None
MAX_ENTRIES = 100_000


class AuthorizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=1,
        max_length=4096,
        description="A user's personal token, or an OIDC access token the hub issued.",
    )
    tenant: str = Field(min_length=1, max_length=40, description="Tenant key.")
    action: Action = Field(description="What the user wants to do; open needs an instance.")
    instance: uuid.UUID | None = Field(default=None, description="Instance id (for open).")


class Authorization(BaseModel):
    allowed: bool
    reason: str
    user: str | None
    role: str | None


def clear() -> None:
    global _stamp
    _cache.clear()
    _raw.clear()
    _refused.clear()
    _stamp = None


def _decide(caller: auth.Caller, body: AuthorizeRequest) -> dict[str, Any]:
    """The answer for ``body``; 403 when the calling app may not ask about the tenant."""
    if body.action not in roles.ACTIONS:
        raise BadInput(f"unknown action {body.action!r}")
    if body.action == "open" and body.instance is None:
        raise BadInput("the open action needs an instance")
    if body.action != "open" and body.instance is not None:
        raise BadInput("instance applies to the open action only")
    with session_scope(write=False) as s:
        try:
            tenant = tenants.get(s, body.tenant)
        except NotFound:
            tenant = None
        # an unknown tenant is refused like a tenant that is not a customer, with the
        # same status and words, so the answer does not tell which tenant keys exist
        if tenant is None or not customers.may_ask(s, caller.app, tenant)[0]:
            raise ApiError(403, "forbidden", customers.not_a_customer(caller.app, body.tenant))
        user = tokens.resolve(s, body.token)
        if user is None and body.token.count(".") == 2:
            user = oidc_tokens.bearer_user(s, body.token)
        if user is None:
            return {
                "allowed": False,
                "reason": "the token is unknown, expired or revoked",
                "user": None,
                "role": None,
            }
        allowed, reason, role = evaluate(s, user, tenant, body.action, body.instance)
        return {"allowed": allowed, "reason": reason, "user": user.email, "role": role}


@dataclass
class _Hit:
    until: float
    key_id: str
    key_expires: datetime | None
    body: bytes


_raw: dict[tuple[str, bytes], _Hit] = {}


@router.post(
    "/v1/idm/authorize",
    response_model=Authorization,
    responses=errors(
        tuple(c for c in WRITE_ERRORS if c not in (404, 409)),
        {
            403: "an unknown tenant is answered the same way",
            422: "also the open action without an instance, or an instance for another action",
        },
    ),
    summary="Whether a user token may act on a tenant",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": AuthorizeRequest.model_json_schema()}},
        },
        "security": [{"HTTPBasic": []}],
    },
)
async def authorize(request: Request) -> Response:
    """Answer ``{allowed, reason, user, role}``; the caller authenticates as an app.

    The hot path is a lookup of (credentials, body) in the answer cache, valid while the
    host's access stamp has not moved and the key has not expired; everything else goes
    through full authentication, validation and the store."""
    header = request.headers.get("authorization") or ""
    raw_body = await request.body()
    hit = cached_answer(header, raw_body)
    if hit is not None:
        await auth.rate(hit.key_id)
        return Response(hit.body, media_type="application/json")
    stamp = revocation.current()  # before the answer is computed: kept only if unchanged
    now = time.monotonic()
    caller = await auth.authenticate(header)
    try:
        body = AuthorizeRequest.model_validate_json(raw_body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        ) from exc
    ttl = config.get().authorize_cache
    key = (caller.app_id, secrets.digest(body.token), body.tenant, body.action, body.instance)
    cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return Response(cached[1], media_type="application/json")
    refused = _refused.get((caller.app_id, body.tenant))
    if refused is not None and refused[0] > now:
        raise ApiError(403, "forbidden", refused[1])
    try:
        answer = await threads.run(_decide, caller, body)
    except ApiError as exc:
        if exc.status == 403 and ttl > 0 and revocation.current() == stamp:
            if len(_refused) >= MAX_ENTRIES:
                _refused.clear()
            _refused[(caller.app_id, body.tenant)] = (now + ttl, exc.message)
        raise
    data = json.dumps(answer).encode()
    if ttl > 0 and revocation.current() == stamp:
        if len(_cache) >= MAX_ENTRIES or len(_raw) >= MAX_ENTRIES:
            _cache.clear()
            _raw.clear()
        _cache[key] = (now + ttl, data)
        entry = auth.cached_key(caller.key_id)
        if entry is not None and len(raw_body) <= 2048:
            _raw[(header, raw_body)] = _Hit(
                min(now + ttl, entry.until), caller.key_id, entry.key_expires, data
            )
    return Response(data, media_type="application/json")


def cached_answer(header: str, raw_body: bytes) -> _Hit | None:
    """The cached answer for exactly these credentials and body, or None (the caller
    still spends a token of ``hit.key_id``)."""
    global _stamp
    stamp = revocation.current()
    if stamp != _stamp:
        _cache.clear()
        _raw.clear()
        _refused.clear()
        _stamp = stamp
        return None
    hit = _raw.get((header, raw_body))
    if hit is None or hit.until <= time.monotonic():
        return None
    if hit.key_expires is not None and hit.key_expires <= clock.now():
        return None
    return hit
