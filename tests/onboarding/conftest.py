"""Onboarding fixtures: a store with a master key, SMTP on loopback (aiosmtpd), an
external-mode tier, the API on a real uvicorn server, and helpers to call it."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest


def basic(key_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


LEAD = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "companyName": "Analytical",
    "email": "ada@analytical.io",
    "address": {"country": "GB", "city": "London", "state": "Greater London"},
}


@dataclass
class Hub:
    url: str
    store: str
    home: Path
    received: list[Any]
    cli: Any
    client: httpx.Client
    bodies: list[str] = field(default_factory=list)  # every response body seen

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, self.url + path, **kwargs)
        self.bodies.append(response.text)
        return response

    def frontend(self, name: str, customers: str = "shared", **kwargs: Any) -> dict[str, str]:
        from mno.store.db import session_scope
        from mno.tenancy import frontends

        with session_scope(self.store) as s:
            issued = frontends.create(s, name, customers=customers, **kwargs)
            return basic(issued.frontend.key_id, issued.secret)

    def app_key(self) -> dict[str, str]:
        from mno.access import keys
        from mno.store.db import session_scope
        from mno.tenancy import apps, tenants

        with session_scope(self.store) as s:
            tenants.create(s, "vendor", name="Vendor", if_not_exists=True)
            apps.create(s, "CRM", code="crm", owner="vendor", if_not_exists=True)
            issued = keys.rotate(s, "crm")
        return basic(issued.key.key_id, issued.secret)

    def mail_for(self, to: str) -> Any:
        """Run the dispatcher until the email to ``to`` arrives over SMTP."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for message in self.received:
                if message["To"] == to:
                    return message
            self.cli.json("agents", "tick", "dispatcher")
            time.sleep(0.05)
        raise AssertionError(f"no email to {to}")

    def code_for(self, to: str) -> str:
        message = self.mail_for(to)
        text = message.get_payload(decode=True).decode() if not message.is_multipart() else ""
        if not text:
            text = email.message_from_string(str(message)).get_payload()
        found = re.search(r"verification code is: (\S+)", str(text))
        assert found, text
        return found.group(1)

    def signup(
        self, creds: dict[str, str], who: str, key: str, domain: str
    ) -> tuple[str, str, dict[str, Any]]:
        """Lead → code from the email → verify → convert; (lead id, tenant id, convert body)."""
        body = LEAD | {"email": f"{who}@{domain}", "companyName": who.title()}
        created = self.call("POST", "/v1/onboarding/leads", json=body, headers=creds)
        assert created.status_code == 201, created.text
        lead_id = created.json()["id"]
        code = self.code_for(body["email"])
        verified = self.call(
            "POST", f"/v1/onboarding/leads/{lead_id}/verify", json={"code": code}, headers=creds
        )
        assert verified.status_code == 200, verified.text
        token = verified.json()["token"]
        converted = self.call(
            "POST",
            f"/v1/onboarding/leads/{lead_id}/tenants",
            json={"key": key, "domains": [domain]},
            headers=creds | {"X-Lead-Token": token},
        )
        assert converted.status_code == 201, converted.text
        return lead_id, converted.json()["id"], converted.json()

    def requested(self, tenant_id: str) -> tuple[str, str]:
        """(context id, one-time secret) of the tenant's external provisioning request."""
        from mno import crypto
        from mno.store import outbox
        from mno.store.db import session_scope

        with session_scope(self.store, write=False) as s:
            events = outbox.list_events(s, limit=10_000)
            (payload,) = [
                e.payload
                for e in events
                if e.type == "tenant.provisioning_requested" and e.payload["tenantId"] == tenant_id
            ]
        return payload["contextId"], crypto.decrypt(payload["callbackSecret"]["$encrypted"])

    def callback(self, tenant_id: str, status: int = 1) -> httpx.Response:
        context, secret = self.requested(tenant_id)
        raw = json.dumps(
            {
                "initiatorId": tenant_id,
                "type": 0,
                "data": {"status": status, "resources": [], "appPlaneUrl": "https://app.test"},
            }
        ).encode()
        ts = str(int(time.time() * 1000))
        sig = hmac.new(secret.encode(), raw + context.encode() + ts.encode(), hashlib.sha256)
        return self.call(
            "POST",
            "/v1/onboarding/webhook",
            content=raw,
            headers={
                "content-type": "application/json",
                "x-signature": sig.hexdigest(),
                "x-timestamp": ts,
            },
        )


def write_profile(
    home: Path, smtp_port: int | None, onboarding: dict[str, Any] | None = None
) -> None:
    import yaml

    from mno.api import config

    profile: dict[str, Any] = {}
    if smtp_port is not None:
        profile["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "from": "hub@example.com"}
    if onboarding:
        profile["onboarding"] = onboarding
    (home / "config.yaml").write_text(yaml.safe_dump({"profiles": {"default": profile}}))
    config.reset()


def start_api() -> tuple[Any, str]:
    from mno.api import auth, config, cors, server

    config.reset()
    auth.clear()
    cors.origins.clear()
    srv, port = server.serve_in_thread("127.0.0.1", 0)
    return srv, f"http://127.0.0.1:{port}"


@pytest.fixture
def hub_at(mno_env: Path, smtp_server: tuple[int, list[Any]], cli: Any) -> Iterator[Any]:
    """A factory: ``hub_at(store_url)`` serves the API on that store (torn down after)."""
    from mno import platform

    servers: list[Any] = []
    clients: list[httpx.Client] = []

    def start(store_url: str) -> Hub:
        assert cli("secret", "init-master-key").exit_code == 0  # seals codes and secrets
        write_profile(mno_env, smtp_server[0])
        (mno_env / "platform.yaml").write_text("tiers:\n  pooled: {mode: external}\n")
        platform.clear_cache()
        srv, url = start_api()
        servers.append(srv)
        client = httpx.Client(timeout=20)
        clients.append(client)
        return Hub(url, store_url, mno_env, smtp_server[1], cli, client)

    yield start
    for client in clients:
        client.close()
    for srv in servers:
        srv.should_exit = True
    platform.clear_cache()


@pytest.fixture
def hub(hub_at: Any, store_url: str) -> Hub:
    """The API on SQLite and on PostgreSQL."""
    return hub_at(store_url)  # type: ignore[no-any-return]


@pytest.fixture
def hub_sqlite(hub_at: Any, sqlite_url: str) -> Hub:
    return hub_at(sqlite_url)  # type: ignore[no-any-return]
