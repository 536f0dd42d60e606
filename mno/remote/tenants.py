"""Tenants over the Hub API, in the shapes of ``mno.tenancy.tenants`` views (dicts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mno.errors import Conflict
from mno.remote.client import HubClient, segment


def page(
    hub: HubClient,
    *,
    status: str | None = None,
    parent: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the tenants the token sees, and the cursor of the next one."""
    return hub.page(
        "/v1/hub/tenants", "tenants", limit=limit, after=after, status=status, parent=parent
    )


def stream(
    hub: HubClient,
    *,
    status: str | None = None,
    parent: str | None = None,
    after: str | None = None,
) -> Iterator[dict[str, Any]]:
    return hub.pages(
        "/v1/hub/tenants", "tenants", status=status, parent=parent, cursor=after, limit=500
    )


def get(hub: HubClient, key: str) -> dict[str, Any]:
    return dict(hub.get(f"/v1/hub/tenants/{segment(key)}"))


def create(
    hub: HubClient, fields: dict[str, Any], *, if_not_exists: bool = False
) -> tuple[dict[str, Any], bool]:
    """The new tenant and True; with ``if_not_exists``, an existing one and False."""
    try:
        return dict(hub.post("/v1/hub/tenants", fields)), True
    except Conflict:
        if not if_not_exists:
            raise
        return get(hub, fields["key"]), False


def update(hub: HubClient, key: str, fields: dict[str, Any]) -> dict[str, Any]:
    changes = {k: v for k, v in fields.items() if v is not None}
    return dict(hub.patch(f"/v1/hub/tenants/{segment(key)}", changes))


def transition(hub: HubClient, key: str, action: str, **body: Any) -> dict[str, Any]:
    """``provision``, ``suspend`` (with ``reason``), ``resume`` or ``archive``."""
    return dict(hub.post(f"/v1/hub/tenants/{segment(key)}/{action}", body))
