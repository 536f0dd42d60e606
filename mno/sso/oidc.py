"""The authorization endpoint's rules: which request is valid, who may sign in to which
app for which tenant, consent, and single-use authorization codes.

An invalid client or redirect URI is never redirected to (``BadInput``: the hub shows an
error page); any other problem is sent back to the client's redirect URI
(``Redirect`` with an OAuth error). A user may sign in to an app only through a tenant
they are a member of and that may use the app (``mno.tenancy.apps.check_access``: the
OWN/ANY/EXPLICIT rules), with a role that reads, and -- where the tenant runs Nex
instances of the app -- a team that opens at least one of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlmodel import select

from mno import clock, settings
from mno.access import check, roles, secrets
from mno.errors import BadInput
from mno.sso import clients
from mno.store import audit, outbox
from mno.store.models.access import Membership, User
from mno.store.models.oidc import OidcClient, OidcCode, OidcConsent
from mno.store.models.sso import SsoSession
from mno.store.models.tenancy import App, Tenant
from mno.tenancy import apps

if TYPE_CHECKING:
    from sqlmodel import Session

CODE_PREFIX = "mnoac"
SCOPES = ("openid", "profile", "email", "offline_access", "tenant")
CODE_TTL = timedelta(seconds=60)
PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "tenant",
)


def issuer(base_url: str) -> str:
    """The issuer: ``sso.issuer`` from the profile, else the URL the hub was reached at."""
    configured = settings.profile_value("sso.issuer")
    return str(configured or base_url).rstrip("/")


class Redirect(Exception):  # noqa: N818  (an outcome, not a failure of the hub)
    """Send the browser back to the client with an OAuth error."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None):
        super().__init__(description)
        self.redirect_uri = redirect_uri
        self.error = error
        self.description = description
        self.state = state

    @property
    def location(self) -> str:
        query = {"error": self.error, "error_description": self.description}
        if self.state is not None:
            query["state"] = self.state
        return add_query(self.redirect_uri, query)


def add_query(uri: str, query: Mapping[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(query)


@dataclass
class AuthRequest:
    client: OidcClient
    app: App
    redirect_uri: str
    scope: list[str]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    prompt: str | None
    tenant: str | None
    params: dict[str, str] = field(default_factory=dict)


def parse(session: Session, params: Mapping[str, str]) -> AuthRequest:
    """Check an authorization request; raises ``BadInput`` (show an error page) or
    ``Redirect`` (an OAuth error for the client)."""
    if any("\x00" in k or "\x00" in v for k, v in params.items()):
        raise BadInput("the request holds a NUL character")
    found = clients.find_with_app(session, params.get("client_id", ""))
    if found is None:
        raise BadInput("unknown or disabled client_id")
    client, app = found
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:  # exact match, nothing looser
        raise BadInput("redirect_uri is not registered for this client")
    state = params.get("state")

    def fail(error: str, description: str) -> Redirect:
        return Redirect(redirect_uri, error, description, state)

    if state is not None and len(state) > 1000:
        raise fail("invalid_request", "state is too long")
    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    scope = [s for s in params.get("scope", "").split() if s]
    if "openid" not in scope:
        raise fail("invalid_scope", "scope must include openid")
    scope = [s for s in dict.fromkeys(scope) if s in SCOPES]
    nonce = params.get("nonce") or None
    if nonce is not None and len(nonce) > 500:
        raise fail("invalid_request", "nonce is too long")
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or ("plain" if challenge else None)
    if challenge is not None:
        if method != "S256":
            raise fail("invalid_request", "code_challenge_method must be S256")
        if not 43 <= len(challenge) <= 128:
            raise fail("invalid_request", "code_challenge must be 43 to 128 characters")
    elif client.public:
        raise fail("invalid_request", "a public client must use PKCE (S256)")
    prompt = params.get("prompt") or None
    kept = {k: params[k] for k in PARAMS if params.get(k) is not None}
    return AuthRequest(
        client, app, redirect_uri, scope, state, nonce, challenge, prompt,
        params.get("tenant") or None, kept,
    )  # fmt: skip


@dataclass(frozen=True)
class Access:
    """The tenants through which a user may sign in to an app, and their role in each."""

    tenants: list[tuple[Tenant, str]]

    @property
    def keys(self) -> list[str]:
        return [t.key for t, _ in self.tenants]


def _instances(session: Session, app: App, tenant: Tenant) -> list[uuid.UUID]:
    from mno.store.models.nex import Instance

    return list(
        session.exec(
            select(Instance.id).where(
                Instance.app_id == app.id,
                Instance.tenant_id == tenant.id,
                Instance.desired != "terminated",
            )
        )
    )


def _may_read(session: Session, user: User, tenant: Tenant, role: str) -> bool:
    """``check.check(user, tenant, "read")`` for a membership already read: a built-in
    role is decided here without reading the membership again; a custom role asks the
    access module."""
    if role in roles.ROLES:
        return (
            user.status == "active"
            and tenant.status not in check.CLOSED
            and roles.allows(role, "read")
        )
    return check.check(session, user, tenant, "read")[0]


def access(session: Session, user: User, app: App) -> Access:
    """Every tenant of ``user`` that may use ``app`` where the user may read (and open
    one of the tenant's instances of the app, when it runs any), by tenant key."""
    rows = session.exec(
        select(Tenant, Membership.role)
        .where(Membership.user_id == user.id, Membership.tenant_id == Tenant.id)
        .order_by(Tenant.key)
    ).all()
    allowed: list[tuple[Tenant, str]] = []
    for tenant, role in rows:
        if not apps.check_access(session, app, tenant)[0]:
            continue
        if not _may_read(session, user, tenant, role):
            continue
        if app.stack == "nex":
            instances = _instances(session, app, tenant)
            if instances and not any(
                check.check(session, user, tenant, "open", i)[0] for i in instances
            ):
                continue
        allowed.append((tenant, role))
    return Access(allowed)


def choose_tenant(req: AuthRequest, user: User, granted: Access) -> tuple[Tenant, str]:
    """The tenant the sign-in is for: the requested one, else the first by key."""
    if not granted.tenants:
        raise Redirect(
            req.redirect_uri,
            "access_denied",
            f"{user.email} may not use {req.app.code} in any of their tenants",
            req.state,
        )
    if req.tenant is None:
        return granted.tenants[0]
    for tenant, role in granted.tenants:
        if tenant.key == req.tenant:
            return tenant, role
    raise Redirect(
        req.redirect_uri,
        "access_denied",
        f"{user.email} may not use {req.app.code} as {req.tenant}",
        req.state,
    )


def consent_of(session: Session, user: User, client: OidcClient) -> OidcConsent | None:
    return session.exec(
        select(OidcConsent).where(
            OidcConsent.user_id == user.id, OidcConsent.client_id == client.id
        )
    ).first()


def needs_consent(session: Session, user: User, client: OidcClient, scope: list[str]) -> bool:
    row = consent_of(session, user, client)
    return row is None or not set(scope) <= set(row.scope.split())


def grant_consent(
    session: Session, user: User, req: AuthRequest, tenant: Tenant | None = None
) -> None:
    """Remember that ``user`` lets the app sign them in with these scopes (and, when
    given, for ``tenant``: the tenant picked on the consent page)."""
    row = consent_of(session, user, req.client)
    before = row.scope.split() if row is not None else []
    before_tenant = row.tenant_id if row is not None else None
    scope = " ".join(dict.fromkeys([*before, *req.scope]))
    if row is None:
        row = OidcConsent(user_id=user.id, client_id=req.client.id, scope=scope)
    row.scope = scope
    if tenant is not None:
        row.tenant_id = tenant.id
    row.touch()
    session.add(row)
    after: dict[str, Any] = {"app": req.app.code, "scope": scope.split()}
    if tenant is not None:
        after["tenant"] = tenant.key
    previous: dict[str, Any] = {"scope": before} if before else {}
    if before_tenant is not None and tenant is not None and before_tenant != tenant.id:
        previous["tenant_id"] = str(before_tenant)
    audit.record(
        session,
        "sso.consent_granted",
        target_type="user",
        target_id=user.id,
        target=user.email,
        before=previous or None,
        after=after,
        actor=user.email,
    )
    outbox.emit(
        session,
        "sso.consent_granted",
        {
            "user": user.email,
            "app": req.app.code,
            "scope": scope.split(),
            "tenant": after.get("tenant"),
        },
    )


def csrf_token(cookie: str) -> str:
    """The consent form's CSRF token: an HMAC of the browser's session cookie, which a
    page of another origin can neither read nor compute."""
    return hmac.new(cookie.encode(), b"mno-oidc-consent", hashlib.sha256).hexdigest()


def csrf_ok(cookie: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(cookie).encode(), (token or "").encode())


def issue_code(
    session: Session, req: AuthRequest, user: User, tenant: Tenant, hub: SsoSession
) -> str:
    """A single-use authorization code (its digest alone is stored) and where to send it."""
    code = secrets.new_token(CODE_PREFIX)
    session.add(
        OidcCode(
            code_hash=secrets.digest(code),
            client_id=req.client.id,
            user_id=user.id,
            tenant_id=tenant.id,
            session_id=hub.id,
            redirect_uri=req.redirect_uri,
            scope=" ".join(req.scope),
            nonce=req.nonce,
            code_challenge=req.code_challenge,
            auth_time=hub.created_at,
            expires_at=clock.now() + CODE_TTL,
        )
    )
    query = {"code": code}
    if req.state is not None:
        query["state"] = req.state
    return add_query(req.redirect_uri, query)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def pkce_ok(challenge: str | None, verifier: str | None) -> bool:
    if challenge is None:
        return verifier is None
    if verifier is None or not 43 <= len(verifier) <= 128:
        return False
    return hmac.compare_digest(s256(verifier).encode(), challenge.encode())


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def describe(req: AuthRequest) -> dict[str, Any]:
    return {"app": req.app.code, "name": req.app.name, "scope": req.scope}


@dataclass
class Outcome:
    """What the authorization endpoint does next: ``redirect`` to ``location`` (the
    code), send the browser to ``signin``, or show the ``consent`` page (with the
    ``choices`` of tenant when the user may use the app through several)."""

    kind: str
    location: str | None = None
    request: AuthRequest | None = None
    user: User | None = None
    tenant: Tenant | None = None
    choices: list[Tenant] = field(default_factory=list)


def _remembered(row: OidcConsent | None, granted: Access) -> tuple[Tenant, str] | None:
    if row is None or row.tenant_id is None:
        return None
    return next(((t, r) for t, r in granted.tenants if t.id == row.tenant_id), None)


def authorize(
    session: Session,
    params: Mapping[str, str],
    cookie: str | None,
    *,
    consent: str | None = None,
    csrf: str | None = None,
    tenant_choice: str | None = None,
) -> Outcome:
    """The authorization endpoint. ``consent`` is the posted answer of the consent form
    (``allow`` or ``deny``), with its ``csrf`` token and the ``tenant_choice`` picked.

    The tenant is, in order: the request's ``tenant`` parameter; the one picked on the
    consent page and remembered with the consent (while the user may still use the app
    through it); the only one when there is one. A user who may use the app through
    several tenants and has not picked one (or whose pick no longer applies) is asked on
    the consent page."""
    from mno.sso import sessions

    req = parse(session, params)
    hub = sessions.find(session, cookie)
    if hub is None or cookie is None:
        if req.prompt == "none":
            raise Redirect(req.redirect_uri, "login_required", "no hub session", req.state)
        return Outcome("signin", request=req)
    user = session.get(User, hub.user_id)
    if user is None:  # pragma: no cover - sessions.find checked it
        return Outcome("signin", request=req)
    granted = access(session, user, req.app)
    first, _ = choose_tenant(req, user, granted)  # refuses a user with no tenant
    choices = [t for t, _ in granted.tenants]
    if consent is not None:
        if not csrf_ok(cookie, csrf):
            raise BadInput("the consent form's CSRF token is missing or wrong")
        if consent != "allow":
            raise Redirect(req.redirect_uri, "access_denied", "the user declined", req.state)
        picked = req.tenant or tenant_choice
        chosen = (
            first if picked is None else choose_tenant(_with_tenant(req, picked), user, granted)[0]
        )
        grant_consent(session, user, req, chosen)
        return Outcome("redirect", issue_code(session, req, user, chosen, hub))
    row = consent_of(session, user, req.client)
    remembered = _remembered(row, granted)
    tenant: Tenant | None
    if req.tenant is not None or len(choices) == 1:
        tenant = first
    elif remembered is not None:
        tenant = remembered[0]
    elif row is not None and row.tenant_id is None:
        tenant = first  # consented before tenants were picked: as then, the first by key
    else:
        tenant = None  # several tenants and no (longer a valid) pick: ask
    scoped = row is not None and set(req.scope) <= set(row.scope.split())
    if tenant is None or not scoped or req.prompt == "consent":
        if req.prompt == "none":
            error = "consent_required" if not scoped else "interaction_required"
            raise Redirect(req.redirect_uri, error, "the user must answer", req.state)
        return Outcome(
            "consent", request=req, user=user, tenant=tenant or first,
            choices=choices if req.tenant is None else [],
        )  # fmt: skip
    return Outcome("redirect", issue_code(session, req, user, tenant, hub))


def _with_tenant(req: AuthRequest, key: str) -> AuthRequest:
    from dataclasses import replace

    return replace(req, tenant=key)
