"""The Hub API (``/v1/hub/...``): one router gathering its resource modules."""

from __future__ import annotations

from fastapi import APIRouter

from mno.api import (
    hub,
    hub_access,
    hub_apps,
    hub_billing,
    hub_instances,
    hub_leads,
    hub_webhooks,
)
from mno.api.errors import ApiRoute

router = APIRouter(route_class=ApiRoute)
for module in (hub, hub_access, hub_apps, hub_billing, hub_instances, hub_leads, hub_webhooks):
    router.include_router(module.router)
