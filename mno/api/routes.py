"""The API router: the IDM, the Hub API (/v1/hub), the onboarding API, Connec and Impac,
the OpenID Connect provider and the sign-in pages; the Developer API; bills, usage,
invoices and credit notes when billing is installed."""

from __future__ import annotations

import importlib.util

from fastapi import APIRouter

from mno.api import connec, dev, dev_invoices, hub_router, idm, impac, signin
from mno.api import oidc as oidc_api
from mno.api import onboarding as onboarding_api
from mno.api.errors import ApiRoute


def billing_available() -> bool:
    try:
        return all(
            importlib.util.find_spec(m) is not None
            for m in ("mno.billing.charges", "mno.billing.usage")
        )
    except ModuleNotFoundError:
        return False


def build_router() -> APIRouter:
    r = APIRouter(route_class=ApiRoute)
    r.include_router(idm.router)
    r.include_router(impac.router)
    r.include_router(connec.router)
    r.include_router(hub_router.router)
    r.include_router(onboarding_api.router)
    r.include_router(oidc_api.router)
    r.include_router(signin.router)
    billing = billing_available()
    for route in dev.router.routes:
        path = getattr(route, "path", "")
        if path.startswith(("/v1/dev/bills", "/v1/dev/usage")) and not billing:
            continue
        r.routes.append(route)
    if billing:
        r.routes.extend(dev_invoices.router.routes)
    return r


router = build_router()
