"""Nex instances over the Hub API (dicts in the shape of the Hub API's ``Instance``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mno.remote.client import HubClient, segment


def stream(hub: HubClient, tenant: str, *, status: str | None = None) -> Iterator[dict[str, Any]]:
    path = f"/v1/hub/tenants/{segment(tenant)}/instances"
    return hub.pages(path, "instances", status=status, limit=500)


def page(
    hub: HubClient, tenant: str, *, limit: int, after: str | None, status: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    path = f"/v1/hub/tenants/{segment(tenant)}/instances"
    return hub.page(path, "instances", limit=limit, after=after, status=status)


def get(hub: HubClient, ref: str) -> dict[str, Any]:
    return dict(hub.get(f"/v1/hub/instances/{segment(ref)}"))


def create(hub: HubClient, tenant: str, fields: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in fields.items() if v is not None}
    return dict(hub.post(f"/v1/hub/tenants/{segment(tenant)}/instances", body))


def act(hub: HubClient, ref: str, verb: str) -> dict[str, Any]:
    """``start``, ``stop`` or ``restart``: the desired state, recorded."""
    return dict(hub.post(f"/v1/hub/instances/{segment(ref)}/{verb}", {}))
