"""Hub API fixtures: two tenants with members, a platform operator, tokens, the server."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from tests.access.conftest import api, api_profile  # noqa: F401  (fixtures)


@pytest.fixture
def world(session: Callable[..., AbstractContextManager[Any]]) -> dict[str, str]:
    """acme (owner@ super_admin, admin@ admin, bob@ member), globex (carol@ super_admin),
    and op@platform.io, super_admin of the system tenant: a token for each."""
    from mno.access import members, tokens
    from mno.tenancy import tenants

    with session() as s:
        tenants.ensure_system(s)
        tenants.create(s, "acme", name="Acme", status="active")
        tenants.create(s, "globex", name="Globex", status="active")
        members.add(s, "acme", "owner@acme.io", "super_admin")
        members.add(s, "acme", "admin@acme.io", "admin")
        members.add(s, "acme", "bob@acme.io", "member")
        members.add(s, "globex", "carol@globex.io", "super_admin")
        members.add(s, "system", "op@platform.io", "super_admin")
    out = {}
    with session() as s:
        for who, email in (
            ("owner", "owner@acme.io"),
            ("admin", "admin@acme.io"),
            ("bob", "bob@acme.io"),
            ("carol", "carol@globex.io"),
            ("op", "op@platform.io"),
        ):
            out[who] = tokens.create(s, email, ttl="1h").secret
    return out


@pytest.fixture
def token(session: Callable[..., AbstractContextManager[Any]]) -> Callable[..., str]:
    """A fresh token of ``email`` with ``scopes`` (None: the default)."""
    from mno.access import tokens

    def make(email: str, *scopes: str) -> str:
        with session() as s:
            return tokens.create(s, email, ttl="1h", scopes=list(scopes) or None).secret

    return make


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class Hub:
    """An httpx client bound to the server, acting with one token at a time."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=30)

    def as_(self, secret: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=bearer(secret), timeout=30)


@pytest.fixture
def hub(api: str) -> Hub:  # noqa: F811
    return Hub(api)
