"""Connec fixtures: tenants acme and globex, apps crm and books (both owned by acme) with
keys, the API on a real uvicorn server on 127.0.0.1, and a webhook receiver."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from tests.access.conftest import api, api_profile, basic  # noqa: F401  (fixtures)
from tests.webhooks.conftest import receiver, webhook_env  # noqa: F401  (fixtures)


class Client:
    """An app's HTTP client for one tenant's Connec API."""

    def __init__(self, base: str, key: dict[str, str], tenant: str) -> None:
        self.base = f"{base}/v1/connec/{tenant}"
        self.headers = basic(key["key_id"], key["secret"])

    def __call__(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)

    def for_tenant(self, tenant: str) -> Client:
        other = Client("", {"key_id": "x", "secret": "y"}, tenant)
        other.base = self.base.rsplit("/", 1)[0] + f"/{tenant}"
        other.headers = self.headers
        return other


@pytest.fixture
def apps_keys(session: Callable[..., AbstractContextManager[Any]]) -> dict[str, dict[str, str]]:
    from mno.access import keys
    from mno.tenancy import apps, tenants

    out = {}
    with session() as s:
        tenants.create(s, "acme", name="Acme", if_not_exists=True)
        tenants.create(s, "globex", name="Globex", if_not_exists=True)
        apps.create(s, "CRM", code="crm", owner="acme", if_not_exists=True)
        apps.create(s, "Books", code="books", owner="acme", if_not_exists=True)
        apps.create(s, "Payroll", code="payroll", owner="globex", if_not_exists=True)
        for code in ("crm", "books", "payroll"):
            issued = keys.rotate(s, code)
            out[code] = {"key_id": issued.key.key_id, "secret": issued.secret}
    return out


@pytest.fixture
def crm(api: str, apps_keys: dict[str, dict[str, str]]) -> Client:  # noqa: F811
    return Client(api, apps_keys["crm"], "acme")


@pytest.fixture
def books(api: str, apps_keys: dict[str, dict[str, str]]) -> Client:  # noqa: F811
    return Client(api, apps_keys["books"], "acme")


@pytest.fixture
def payroll(api: str, apps_keys: dict[str, dict[str, str]]) -> Client:  # noqa: F811
    return Client(api, apps_keys["payroll"], "globex")
