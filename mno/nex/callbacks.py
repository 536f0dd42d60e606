"""``POST /v1/callbacks/provisioning``: the signed answer of an external provisioning
pipeline (SourceLoop's scheme, checked more strictly).

Body ``{"initiatorId": <tenant id>, "type": 0, "data": {"status": 0|1, "resources": [...],
"appPlaneUrl": …}}``; headers ``x-signature`` (lowercase hex HMAC-SHA256 keyed with the
one-time secret over raw body ‖ context id ‖ timestamp) and ``x-timestamp`` (Unix ms).

Answers: 200 applied; 400 malformed; 401 bad signature or timestamp outside the window;
404 unknown tenant or no request waiting; 409 already used (a replay); 410 the secret
expired. Anything but 200 changes nothing.

``handle()`` is the whole rule; ``mno.agents.callbacks_http`` serves it over HTTP on the
agents' listener (the body limit is there).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from mno import clock, crypto, platform, signing
from mno.nex.provisioning import tier_config
from mno.settings import parse_duration
from mno.store import audit
from mno.store.db import session_scope
from mno.store.models.nex import ProvisioningRequest
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

PATH = "/v1/callbacks/provisioning"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


def _fail(status: int, message: str) -> Answer:
    return Answer(status, {"error": message})


def handle(
    raw: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    db_url: str | None = None,
) -> Answer:
    """Verify and apply one callback in one transaction; see the module docstring."""
    if not signature or not timestamp:
        return _fail(400, "x-signature and x-timestamp headers are required")
    parsed = _parse(raw)
    if isinstance(parsed, Answer):
        return parsed
    tenant_id, data, status = parsed
    if not timestamp.isdigit():
        return _fail(400, "x-timestamp must be Unix milliseconds")
    with session_scope(db_url) as s:
        tenant = s.get(Tenant, tenant_id)
        if tenant is None:
            return _fail(404, "unknown tenant")
        requests = s.exec(
            select(ProvisioningRequest)
            .where(ProvisioningRequest.tenant_id == tenant.id)
            .order_by(col(ProvisioningRequest.created_at).desc())
        ).all()
        if not requests:
            return _fail(404, "no provisioning request is waiting for this tenant")
        window_ms = int(
            parse_duration(tier_config(tenant, platform.load()).callback_window).total_seconds()
            * 1000
        )
        now_ms = int(clock.now().timestamp() * 1000)
        match = _signed_by(requests, raw, timestamp, signature)
        if match is None:
            return _fail(401, "invalid signature")
        if abs(now_ms - int(timestamp)) > window_ms:
            return _fail(401, "x-timestamp is outside the accepted window")
        if match.used_at is not None:
            return _fail(409, "this callback was already applied")
        if match.expires_at < clock.now():
            return _fail(410, "the callback secret has expired")
        if tenant.status != "provisioning":
            return _fail(409, f"tenant {tenant.key} is {tenant.status}, not provisioning")
        _apply(s, tenant, match, status, data)
        return Answer(200, {"tenant": tenant.key, "status": tenant.status})


def _parse(raw: bytes) -> tuple[uuid.UUID, dict[str, Any], int] | Answer:
    """The body's tenant id, ``data`` and status (0 or 1), or the 400 answer."""
    try:
        body = json.loads(raw)
        tenant_id = uuid.UUID(str(body["initiatorId"]))
        data = body.get("data") or {}
        status = int(data["status"])
        if status not in (0, 1):
            raise ValueError("status must be 0 or 1")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        return _fail(400, f"malformed callback body: {exc}")
    return tenant_id, data, status


def _signed_by(
    requests: Sequence[ProvisioningRequest], raw: bytes, timestamp: str, signature: str
) -> ProvisioningRequest | None:
    """The request (newest first) whose one-time secret signed this callback."""
    for request in requests:
        secret = crypto.decrypt(request.secret_enc)
        if signing.verify_hmac_hex(
            secret, raw, request.context_id, timestamp, signature, tolerance_ms=None
        ):
            return request
    return None


def _apply(
    s: Session, tenant: Tenant, match: ProvisioningRequest, status: int, data: dict[str, Any]
) -> None:
    """Use up the request and move the tenant to active (1) or provision_failed (0)."""
    match.used_at = clock.now()
    if status == 1:
        tenant.resources = {
            "resources": data.get("resources") or [],
            "appPlaneUrl": data.get("appPlaneUrl"),
        }
        s.add(tenant)
        tenants.transition(s, tenant, "active")
        match.outcome = "active"
    else:
        reason = str(data.get("reason") or data.get("message") or "the pipeline failed")
        tenants.transition(s, tenant, "provision_failed", reason[:500])
        match.outcome = "provision_failed"
    s.add(match)
    audit.record(
        s,
        "tenant.provisioning_callback",
        target_type="tenant",
        target_id=tenant.id,
        target=tenant.key,
        after={"status": status, "context_id": match.context_id, "outcome": match.outcome},
        tenant_id=tenant.id,
        actor="callback",
    )
