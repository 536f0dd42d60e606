"""Access fixtures: a tenant with members, and the API served by uvicorn on loopback."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest


@pytest.fixture
def acme(session: Callable[..., AbstractContextManager[Any]]) -> str:
    """Tenant ``acme`` with owner@ (super_admin), admin@ (admin) and bob@ (member)."""
    from mno.access import members
    from mno.tenancy import tenants

    with session() as s:
        tenants.create(s, "acme", name="Acme", if_not_exists=True)
        members.add(s, "acme", "owner@acme.io", "super_admin")
        members.add(s, "acme", "admin@acme.io", "admin")
        members.add(s, "acme", "bob@acme.io", "member")
    return "acme"


def basic(key_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def api_profile(mno_env: Any) -> Callable[..., None]:
    """Write the profile's ``api``/``access`` sections (then the API reads them afresh)."""
    import yaml

    def write(api: dict[str, Any] | None = None, access: dict[str, Any] | None = None) -> None:
        from mno.api import config

        profile: dict[str, Any] = {}
        if api:
            profile["api"] = api
        if access:
            profile["access"] = access
        (mno_env / "config.yaml").write_text(yaml.safe_dump({"profiles": {"default": profile}}))
        config.reset()

    write()
    return write


@pytest.fixture
def api(store_url: str, api_profile: Any) -> Iterator[str]:
    """The API on 127.0.0.1 (a real uvicorn server in a thread); yields its base URL."""
    from mno.api import auth, config, idm, server

    config.reset()
    auth.clear()
    idm.clear()
    srv, port = server.serve_in_thread("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        config.reset()
        auth.clear()
        idm.clear()


@pytest.fixture
def app_key(session: Callable[..., AbstractContextManager[Any]]) -> dict[str, str]:
    """App ``crm`` owned by tenant ``acme`` (created here when missing) with a fresh key."""
    from mno.access import keys
    from mno.tenancy import apps, tenants

    with session() as s:
        tenants.create(s, "acme", name="Acme", if_not_exists=True)
        apps.create(s, "CRM", code="crm", owner="acme", if_not_exists=True)
        issued = keys.rotate(s, "crm")
    return {"key_id": issued.key.key_id, "secret": issued.secret}
