"""The onboarding API, compatible with SourceLoop's tenant-management lead flow.

- ``POST /v1/onboarding/leads``: a lead; its verification code goes by email only;
- ``POST /v1/onboarding/leads/{id}/verify``: the code → a lead token (single use);
- ``POST /v1/onboarding/leads/{id}/tenants``: with ``X-Lead-Token``, convert the lead to
  a tenant and start its provisioning, atomically;
- ``GET /v1/onboarding/tenants/{id}/provisioning``: the provisioning status;
- ``POST /v1/onboarding/webhook``: the signed provisioning callback (``mno.nex.callbacks``).

Callers authenticate with HTTP Basic: a frontend's key id and secret, or an app key.
A frontend's credentials are refused from a browser origin it does not allow. Lead
creation is rate limited per client (``onboarding.lead_limit`` per
``onboarding.lead_window`` in the profile, default 10 per minute), the webhook per source
address (``onboarding.webhook_limit`` per ``onboarding.webhook_window``, 60 a minute).

(No ``from __future__ import annotations`` here: FastAPI resolves the route's
annotations at run time.)
"""

import hashlib
import math
from typing import Any

from fastapi import APIRouter, Depends, Header, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasicCredentials
from pydantic import BaseModel, ConfigDict, Field

from mno import settings
from mno.access import ratelimit
from mno.api import auth, context, threads
from mno.api.errors import READ, ApiError, ApiRoute, error_response, errors
from mno.nex import callbacks, provisioning
from mno.store.db import session_scope
from mno.tenancy import frontends, leads, onboarding
from mno.tenancy.onboarding import Client

router = APIRouter(route_class=ApiRoute, tags=["onboarding"])

PREFIX = "/v1/onboarding"
LEAD_TOKEN = "X-Lead-Token"


# -- authentication -----------------------------------------------------------------------


def _frontend(key_id: str, secret: str) -> Any:
    with session_scope(write=False) as s:
        return frontends.authenticate(s, key_id, secret)


async def onboarding_client(
    request: Request, _creds: HTTPBasicCredentials | None = Security(auth.basic)
) -> Client:
    """A frontend (its credentials, from an origin it allows) or an app key; else 401."""
    header = request.headers.get("authorization")
    pair = auth.parse_basic(header)
    if pair is not None and pair[0].startswith(frontends.KEY_PREFIX):
        found = await threads.run(_frontend, pair[0], pair[1])
        if found is None:
            raise ApiError(
                401, "unauthorized", "bad frontend credentials", {"WWW-Authenticate": "Basic"}
            )
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() not in found.origins:
            raise ApiError(403, "forbidden", f"origin {origin} is not allowed for this frontend")
        return Client.of_frontend(found)
    caller = await auth.authenticate(header)
    return Client("app", caller.app_id, caller.app_code)


def _short(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _take(bucket: str, setting: str, default: int) -> float:
    """Spend one token of ``bucket`` (``onboarding.<setting>`` per
    ``onboarding.<setting with window>``, default ``default`` a minute); the seconds to
    wait when none is left, else 0."""
    limit = float(settings.profile_value(f"onboarding.{setting}", default))
    window = settings.parse_duration(
        settings.profile_value(f"onboarding.{setting.replace('limit', 'window')}", "1m")
    ).total_seconds()
    with session_scope() as s:
        taken = ratelimit.take(s, bucket, limit / window, limit, 1)
    context.set_rate(limit, taken.left, (limit - taken.left) * window / limit)
    return 0.0 if taken.tokens else taken.retry_after


def _limited(message: str, wait: float) -> ApiError:
    return ApiError(429, "rate_limited", message, {"Retry-After": str(max(1, math.ceil(wait)))})


# -- models -------------------------------------------------------------------------------


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    state: str | None = Field(default=None, max_length=100, description="Accepted, not stored.")
    zip: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=2, description="ISO 3166-1 alpha-2.")


class LeadIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "firstName": "Ada",
                    "lastName": "Lovelace",
                    "companyName": "Analytical",
                    "email": "ada@analytical.io",
                    "address": {"country": "GB", "city": "London"},
                }
            ]
        },
    )

    firstName: str = Field(min_length=1, max_length=100)
    lastName: str = Field(min_length=1, max_length=100)
    companyName: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=254)
    address: Address | None = None


class LeadOut(BaseModel):
    id: str
    email: str
    firstName: str
    lastName: str
    companyName: str
    isValidated: bool
    status: str = Field(description="pending, verified, locked or converted")
    codeExpiresAt: str | None = Field(description="When the emailed code stops working.")


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"code": "…"}]})

    code: str = Field(min_length=1, max_length=100, description="The code from the email.")


class VerifyOut(BaseModel):
    id: str
    token: str = Field(description="The lead token: send it as X-Lead-Token to convert.")
    tokenExpiresAt: str


class TenantIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"key": "analytical", "domains": ["analytical.io"]}]},
    )

    key: str = Field(min_length=1, max_length=40, description="Unique tenant key (subdomain).")
    domains: list[str] = Field(min_length=1, max_length=20)
    name: str | None = Field(default=None, max_length=200, description="Default: companyName.")
    tier: str = Field(default="pooled", min_length=1, max_length=40)
    provision: bool = Field(default=True, description="Start provisioning at once.")


class ProvisioningRequestOut(BaseModel):
    contextId: str
    requestedAt: str | None
    expiresAt: str | None
    answeredAt: str | None
    outcome: str | None


class ProvisioningOut(BaseModel):
    id: str
    key: str
    name: str
    status: str
    statusCode: int | None = Field(description="SourceLoop's numeric TenantStatus.")
    reason: str | None
    appPlaneUrl: str | None
    request: ProvisioningRequestOut | None


class TenantOut(ProvisioningOut):
    leadId: str
    domains: list[str]


# -- routes -------------------------------------------------------------------------------


def _lead_out(lead: Any) -> dict[str, Any]:
    view = leads.view(lead)
    return {
        "id": view["id"],
        "email": view["email"],
        "firstName": view["first_name"],
        "lastName": view["last_name"],
        "companyName": view["company"],
        "isValidated": lead.status in ("verified", "converted"),
        "status": lead.status,
        "codeExpiresAt": view["code_expires_at"],
    }


def _create_lead(client: Client, body: LeadIn) -> dict[str, Any]:
    address = body.address or Address()
    with session_scope() as s:
        lead = onboarding.create_lead(
            s,
            client,
            email=body.email,
            first_name=body.firstName,
            last_name=body.lastName,
            company=body.companyName,
            country=address.country,
            city=address.city,
            zip=address.zip,
            address=address.address,
        )
        return _lead_out(lead)


@router.post(
    f"{PREFIX}/leads",
    status_code=201,
    response_model=LeadOut,
    responses=errors(
        (400, 401, 403, 409, 413, 422, 429),
        {409: "a validated lead with this email exists", 429: "too many leads from this client"},
    ),
    summary="Sign a lead up; its verification code is emailed, never returned",
)
async def create_lead(body: LeadIn, client: Client = Depends(onboarding_client)) -> Any:
    wait = await threads.run(_take, f"onb:{client.id.hex}", "lead_limit", 10)
    if wait:
        raise _limited("too many leads from this client", wait)
    return JSONResponse(await threads.run(_create_lead, client, body), status_code=201)


def _verify(client: Client, lead_id: str, code: str) -> dict[str, Any]:
    with session_scope() as s:
        lead, token, error = onboarding.verify(s, client, lead_id, code)
        row = onboarding.lead_for(s, client, lead_id) if token else None
        out = {
            "id": str(lead.id),
            "token": token,
            "tokenExpiresAt": row.token_expires_at.isoformat().replace("+00:00", "Z")
            if row is not None and row.token_expires_at is not None
            else None,
        }
    if error is not None:  # the wrong attempt is committed first
        raise error
    return out


@router.post(
    f"{PREFIX}/leads/{{lead_id}}/verify",
    response_model=VerifyOut,
    responses=errors(notes={409: "the lead is locked, already verified or its code expired"}),
    summary="Verify a lead's email with the emailed code; returns the lead token",
)
async def verify_lead(
    lead_id: str, body: VerifyIn, client: Client = Depends(onboarding_client)
) -> Any:
    return await threads.run(_verify, client, lead_id, body.code)


def _convert(client: Client, lead_id: str, token: str | None, body: TenantIn) -> dict[str, Any]:
    with session_scope() as s:
        tenant = onboarding.convert(
            s,
            client,
            lead_id,
            token,
            key=body.key,
            domains=body.domains,
            name=body.name,
            tier=body.tier,
        )
        if body.provision:  # in the same transaction: all or nothing
            provisioning.provision(s, tenant.key)
        status = onboarding.provisioning_status(s, client, tenant.id)
        domains = [str(d) for d in body.domains]
        return status | {"leadId": lead_id, "domains": domains}


@router.post(
    f"{PREFIX}/leads/{{lead_id}}/tenants",
    status_code=201,
    response_model=TenantOut,
    responses=errors(
        notes={
            403: "the lead token is missing, wrong, used or expired",
            409: "the lead is not verified, already converted, or the key is taken",
        }
    ),
    summary="Convert a verified lead into a tenant and start provisioning (atomic)",
)
async def convert_lead(
    lead_id: str,
    body: TenantIn,
    client: Client = Depends(onboarding_client),
    token: str | None = Header(
        default=None, alias=LEAD_TOKEN, max_length=100, description="The token from verify."
    ),
) -> Any:
    result = await threads.run(_convert, client, lead_id, token, body)
    return JSONResponse(result, status_code=201)


def _status(client: Client, tenant_id: str) -> dict[str, Any]:
    with session_scope(write=False) as s:
        return onboarding.provisioning_status(s, client, tenant_id)


@router.get(
    f"{PREFIX}/tenants/{{tenant_id}}/provisioning",
    response_model=ProvisioningOut,
    responses=READ,
    summary="A tenant's provisioning status",
)
async def provisioning_status(tenant_id: str, client: Client = Depends(onboarding_client)) -> Any:
    return await threads.run(_status, client, tenant_id)


class CallbackOut(BaseModel):
    tenant: str
    status: str


_CALLBACK_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 409: "conflict"}
_CALLBACK_ERRORS = errors(
    (400, 401, 404, 409, 413, 422, 429),
    {
        401: "bad signature, or x-timestamp outside the window",
        404: "unknown tenant, or no provisioning request waiting",
        409: "already applied, or the tenant is not provisioning",
        429: "too many callbacks from this address",
    },
)
_CALLBACK_ERRORS[410] = {**_CALLBACK_ERRORS[404], "description": "The callback secret expired"}


@router.post(
    f"{PREFIX}/webhook",
    response_model=CallbackOut,
    responses=_CALLBACK_ERRORS,
    summary="The signed provisioning callback (x-signature, x-timestamp)",
)
async def provisioning_webhook(request: Request) -> Any:
    source = request.client.host if request.client else "unknown"
    wait = await threads.run(_take, f"cbk:{_short(source)}", "webhook_limit", 60)
    if wait:
        raise _limited("too many callbacks from this address", wait)
    raw = await request.body()
    signature, timestamp = request.headers.get("x-signature"), request.headers.get("x-timestamp")
    answer = await threads.run(callbacks.handle, raw, signature, timestamp)
    if answer.status != 200:
        message = str(answer.body.get("error", "refused"))
        code = _CALLBACK_CODES.get(answer.status, "gone")
        return error_response(answer.status, code, message)
    return answer.body
