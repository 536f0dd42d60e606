"""``Idempotency-Key`` on Connec's POSTs (create and batch), as on the Hub API: a retry
gets the first answer with ``Idempotent-Replayed: true`` and writes nothing, the same key
with another body is 422, a refused request keeps no key, keys are the caller's own, and
concurrent retries (PostgreSQL) write once. Against the API on a real uvicorn server."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa

from tests.connec.conftest import Client


def counts(store_url: str) -> tuple[int, int, int]:
    """(organizations, their change rows, their connec events) in the store."""
    from mno.store.db import session_scope

    with session_scope(store_url, write=False) as s:
        one: Callable[[str], int] = lambda q: int(s.execute(sa.text(q)).scalar_one())  # noqa: E731
        return (
            one("SELECT count(*) FROM sync_record WHERE entity = 'organizations'"),
            one("SELECT count(*) FROM sync_change WHERE entity = 'organizations'"),
            one("SELECT count(*) FROM outbox_event WHERE type LIKE 'connec.organizations.%'"),
        )


def test_create_replays_under_its_key(crm: Client, books: Client, store_url: str) -> None:
    key = {"Idempotency-Key": "create-1"}
    first = crm("POST", "/organizations", json={"id": "c1", "name": "Acme"}, headers=key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert first.headers["etag"] == '"1"'
    assert first.headers["location"] == f"/v1/connec/acme/organizations/{first.json()['id']}"
    assert counts(store_url) == (1, 1, 1)

    again = crm("POST", "/organizations", json={"name": "Acme", "id": "c1"}, headers=key)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["etag"] == '"1"'
    assert counts(store_url) == (1, 1, 1)  # nothing written again (no 409 for c1 either)

    other = crm("POST", "/organizations", json={"name": "Other"}, headers=key)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert counts(store_url) == (1, 1, 1)

    # keys belong to the caller: books' "create-1" is its own
    mine = books("POST", "/organizations", json={"name": "Other"}, headers=key)
    assert mine.status_code == 201 and "idempotent-replayed" not in mine.headers
    assert counts(store_url) == (2, 2, 2)


def test_a_refused_request_keeps_no_key(crm: Client, store_url: str) -> None:
    key = {"Idempotency-Key": "fix-and-retry"}
    bad = crm("POST", "/organizations", json={"name": ""}, headers=key)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "name"
    assert counts(store_url) == (0, 0, 0)
    good = crm("POST", "/organizations", json={"name": "Fixed"}, headers=key)
    assert good.status_code == 201 and "idempotent-replayed" not in good.headers
    assert (
        crm("POST", "/organizations", json={"name": "Fixed"}, headers=key).headers[
            "idempotent-replayed"
        ]
        == "true"
    )
    assert counts(store_url) == (1, 1, 1)


def test_batch_replays_under_its_key(crm: Client, store_url: str) -> None:
    ops = {
        "operations": [
            {"op": "create", "entity": "organizations", "data": {"name": "A"}},
            {"op": "create", "entity": "organizations", "data": {"name": ""}},
            {"op": "create", "entity": "organizations", "data": {"name": "B"}},
        ]
    }
    key = {"Idempotency-Key": "batch-1"}
    first = crm("POST", "/batch", json=ops, headers=key)
    assert first.status_code == 200, first.text
    assert [r["status"] for r in first.json()["results"]] == [201, 422, 201]
    again = crm("POST", "/batch", json=ops, headers=key)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert counts(store_url) == (2, 2, 2)
    ops["operations"].pop()
    assert crm("POST", "/batch", json=ops, headers=key).status_code == 422
    assert counts(store_url) == (2, 2, 2)


def test_concurrent_retries_write_once(crm: Client, store_url: str) -> None:
    if not store_url.startswith("postgresql"):
        pytest.skip("concurrent retries are checked on PostgreSQL")
    key = {"Idempotency-Key": "racing"}

    def post(_: int) -> Any:
        return crm("POST", "/organizations", json={"id": "r1", "name": "Race"}, headers=key)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(1 for a in answers if "idempotent-replayed" not in a.headers) == 1
    assert counts(store_url) == (1, 1, 1)

    batch = {"operations": [{"op": "create", "entity": "organizations", "data": {"name": "B"}}]}

    def post_batch(_: int) -> Any:
        return crm("POST", "/batch", json=batch, headers={"Idempotency-Key": "racing-batch"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post_batch, range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["transaction_id"] for a in answers}) == 1
    assert counts(store_url) == (2, 2, 2)
