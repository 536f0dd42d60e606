"""Leads over the Hub API, in the shape of ``mno.tenancy.leads.view`` (dicts)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mno.remote.client import HubClient, segment


def page(
    hub: HubClient, *, status: str | None = None, after: str | None = None, limit: int = 100
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of leads, newest first, and the cursor of the next one."""
    return hub.page("/v1/hub/leads", "leads", limit=limit, after=after, status=status)


def stream(
    hub: HubClient, *, status: str | None = None, after: str | None = None
) -> Iterator[dict[str, Any]]:
    return hub.pages("/v1/hub/leads", "leads", status=status, cursor=after, limit=500)


def get(hub: HubClient, lead_id: str) -> dict[str, Any]:
    return dict(hub.get(f"/v1/hub/leads/{segment(lead_id)}"))
