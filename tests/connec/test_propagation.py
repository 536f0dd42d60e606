"""Propagation: a change one app writes reaches every other app of the tenant that
subscribes to the entity, through the webhook dispatcher (Standard Webhooks signing,
real receivers on 127.0.0.1), and never comes back to the app that wrote it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.webhooks.conftest import Receiver, start_receiver
from tests.webhooks.test_delivery import spec_verify, tick


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    rec, server = start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


def subscribe(client: Any, url: str, entities: list[str]) -> dict[str, Any]:
    r = client("POST", "/subscriptions", json={"url": url, "entities": entities})
    assert r.status_code == 201, r.text
    return r.json()


def test_changes_reach_the_other_apps_and_never_echo(
    crm, books, payroll, receiver, second_receiver, store_url
):
    books_sub = subscribe(books, receiver.url, ["organizations"])
    crm_sub = subscribe(crm, second_receiver.url, ["organizations", "people"])
    assert books_sub["secret"].startswith("whsec_")
    assert crm("GET", "/subscriptions").json()["subscriptions"][0]["entities"] == [
        "organizations",
        "people",
    ]
    assert "secret" not in crm("GET", "/subscriptions").json()["subscriptions"][0]

    org = crm("POST", "/organizations", json={"id": "c1", "name": "Acme Corp"}).json()
    crm("POST", "/items", json={"name": "not subscribed"})
    tick(store_url)
    assert [r.json["type"] for r in receiver.requests] == ["connec.organizations.created"]
    got = receiver.requests[0]
    assert spec_verify(books_sub["secret"], got.headers, got.body)
    assert got.json["data"]["record_id"] == org["id"]
    assert got.json["data"]["source"] == "app:crm"
    assert got.json["data"]["data"] == {"name": "Acme Corp"}
    assert second_receiver.requests == []  # crm wrote it: no echo

    books("PATCH", f"/organizations/{org['id']}", json={"email": "hi@acme.io"})
    tick(store_url)
    assert len(receiver.requests) == 1  # books wrote it: no echo
    assert [r.json["type"] for r in second_receiver.requests] == ["connec.organizations.updated"]
    upd = second_receiver.requests[0]
    assert spec_verify(crm_sub["secret"], upd.headers, upd.body)
    assert upd.json["data"]["version"] == 2 and upd.json["data"]["source"] == "app:books"

    # another tenant's app writing its own data reaches nobody here
    payroll("POST", "/organizations", json={"name": "Globex"})
    # a rollback has no source app: every subscriber hears it
    crm("POST", f"/transactions/{org['transaction_id']}/rollback", params={"force": "true"})
    tick(store_url)
    assert [r.json["type"] for r in receiver.requests][-1] == "connec.organizations.deleted"
    assert [r.json["type"] for r in second_receiver.requests][-1] == "connec.organizations.deleted"
    assert len(receiver.requests) == 2 and len(second_receiver.requests) == 2

    r = books("DELETE", f"/subscriptions/{books_sub['id']}")
    assert r.status_code == 204
    assert books("GET", "/subscriptions").json()["subscriptions"] == []
    assert crm("DELETE", f"/subscriptions/{books_sub['id']}").status_code == 404
    bad = books("POST", "/subscriptions", json={"url": receiver.url, "entities": ["nope"]})
    assert bad.status_code == 404
