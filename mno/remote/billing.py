"""Subscriptions and invoices over the Hub API (dicts in the Hub API's shapes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mno.remote.client import HubClient, segment


def subscriptions(
    hub: HubClient, tenant: str, *, status: str | None = None
) -> Iterator[dict[str, Any]]:
    path = f"/v1/hub/tenants/{segment(tenant)}/subscriptions"
    return hub.pages(path, "subscriptions", status=status, limit=500)


def subscription_page(
    hub: HubClient, tenant: str, *, limit: int, after: str | None, status: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    path = f"/v1/hub/tenants/{segment(tenant)}/subscriptions"
    return hub.page(path, "subscriptions", limit=limit, after=after, status=status)


def invoice_page(
    hub: HubClient,
    tenant: str,
    *,
    limit: int,
    after: str | None,
    status: str | None = None,
    period: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    path = f"/v1/hub/tenants/{segment(tenant)}/invoices"
    return hub.page(path, "invoices", limit=limit, after=after, status=status, period=period)


def subscribe(hub: HubClient, tenant: str, fields: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in fields.items() if v is not None}
    return dict(hub.post(f"/v1/hub/tenants/{segment(tenant)}/subscriptions", body))


def get_subscription(hub: HubClient, sub_id: str) -> dict[str, Any]:
    return dict(hub.get(f"/v1/hub/subscriptions/{segment(sub_id)}"))


def cancel(hub: HubClient, sub_id: str, *, at_period_end: bool, credit: bool) -> dict[str, Any]:
    body = {"at_period_end": at_period_end, "credit": credit}
    return dict(hub.post(f"/v1/hub/subscriptions/{segment(sub_id)}/cancel", body))


def invoices(
    hub: HubClient, tenant: str, *, status: str | None = None, period: str | None = None
) -> Iterator[dict[str, Any]]:
    path = f"/v1/hub/tenants/{segment(tenant)}/invoices"
    return hub.pages(path, "invoices", status=status, period=period, limit=500)


def invoice(hub: HubClient, ref: str) -> dict[str, Any]:
    return dict(hub.get(f"/v1/hub/invoices/{segment(ref)}"))
