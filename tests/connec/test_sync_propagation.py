"""Records pulled by the sync engine reach Connec subscribers as an app's API write does.

A json-server (npm, the example connector of ``configs/connectors`` mapped onto
organizations) is the external API of the connector app ``json-server``; its creates,
edits and deletes pulled by a sync run reach the CRM app's subscription on a real webhook
receiver with the event type and payload of an API write, and never the connector app's
own subscription. Each change's event commits with the change (same transaction): every
change row of a run has its event. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.connec.conftest import Client
from tests.sync.servers import ROOT, JsonServer, json_server_bin
from tests.sync.test_third_party import seed
from tests.webhooks.conftest import Receiver, start_receiver
from tests.webhooks.test_delivery import spec_verify, tick

CONNECTOR = ROOT / "configs" / "connectors" / "json-server.yaml"
KEYS = {"record_id", "entity", "version", "source", "source_app_id", "data"}


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    rec, server = start_receiver()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[JsonServer]:
    found = json_server_bin()
    if isinstance(found, str):
        pytest.skip(f"json-server {found}")
    server = JsonServer(found, tmp_path / "json-server", seed(3, ms=True))
    yield server
    server.stop()


def events(url: str, prefix: str) -> list[Any]:
    import sqlalchemy as sa

    from mno.store.db import session_scope
    from mno.store.models.core import Event

    with session_scope(url, write=False) as s:
        rows = s.execute(
            sa.select(Event.type, Event.payload)
            .where(Event.type.like(prefix + "%"))  # type: ignore[attr-defined]
            .order_by(Event.seq)  # type: ignore[arg-type]
        ).all()
    return [(t, p) for t, p in rows]


def test_pulled_changes_reach_subscribers_like_api_writes(
    api: str,
    store_url: str,
    json_server: JsonServer,
    receiver: Receiver,
    second_receiver: Receiver,
    tmp_path: Path,
) -> None:
    from mno.access import keys
    from mno.store.db import session_scope
    from mno.sync import connections, engine, spec
    from mno.tenancy import apps, tenants

    yaml_text = CONNECTOR.read_text().replace("canonical: contact", "canonical: organizations")
    path = tmp_path / "json-server.yaml"
    path.write_text(yaml_text)
    with session_scope(store_url) as s:
        tenants.create(s, "acme")
        connector_app = apps.create(
            s, "json-server", code="json-server", stack="connector", owner="acme"
        )
        connector_app_id = str(connector_app[0].id)
        apps.create(s, "CRM", code="crm", owner="acme")
        spec.apply(s, spec.load_file(path), str(path))
        tenant_key = "acme"
        name = connections.add(s, tenant_key, "json-server", base_url=json_server.url).name
        crm_key = keys.rotate(s, "crm")
        js_key = keys.rotate(s, "json-server")
    crm = Client(api, {"key_id": crm_key.key.key_id, "secret": crm_key.secret}, "acme")
    js = Client(api, {"key_id": js_key.key.key_id, "secret": js_key.secret}, "acme")
    crm_sub = crm(
        "POST", "/subscriptions", json={"url": receiver.url, "entities": ["organizations"]}
    )
    assert crm_sub.status_code == 201, crm_sub.text
    js_sub = js(
        "POST", "/subscriptions", json={"url": second_receiver.url, "entities": ["organizations"]}
    )
    assert js_sub.status_code == 201, js_sub.text

    run = engine.run(name, db_url=store_url, sleep=lambda _s: None)
    assert run.status == "success", run.error
    assert run.counts["created"] == 3
    tick(store_url)
    got = [r.json for r in receiver.requests]
    assert [g["type"] for g in got] == ["connec.organizations.created"] * 3
    assert spec_verify(
        crm_sub.json()["secret"], receiver.requests[0].headers, receiver.requests[0].body
    )
    by_name = {g["data"]["data"]["name"]: g["data"] for g in got}
    first = by_name["name 1"]
    assert set(first) == KEYS
    assert first["entity"] == "organizations" and first["version"] == 1
    assert first["source"] == name and first["source_app_id"] == connector_app_id
    assert first["data"] == {
        "name": "name 1",
        "email": "user1@example.test",
        "phone": "+33 1 00 00 0001",
    }
    assert second_receiver.requests == []  # the connector's app wrote them: no echo

    # the API's view of the record agrees with the event
    rec = crm("GET", f"/organizations/{first['record_id']}").json()
    assert rec["data"] == first["data"] and rec["version"] == 1

    # an API write's payload has the same shape (crm writes: the connector app hears it)
    made = crm("POST", "/organizations", json={"name": "From the API"})
    assert made.status_code == 201, made.text
    tick(store_url)
    assert [r.json["type"] for r in second_receiver.requests] == ["connec.organizations.created"]
    assert set(second_receiver.requests[0].json["data"]) == KEYS
    assert len(receiver.requests) == 3  # crm wrote it: no echo

    # an edit and a delete at json-server, pulled by a full pass
    json_server.edit(2, name="two")
    json_server.delete(1)
    run = engine.run(name, db_url=store_url, full=True, sleep=lambda _s: None)
    assert run.status == "success", run.error
    assert run.counts["updated"] == 1 and run.counts["deleted"] == 1
    tick(store_url)
    later = [r.json for r in receiver.requests[3:]]
    assert sorted(g["type"] for g in later) == [
        "connec.organizations.deleted",
        "connec.organizations.updated",
    ]
    upd = next(g["data"] for g in later if g["type"].endswith("updated"))
    assert set(upd) == KEYS and upd["version"] == 2 and upd["data"]["name"] == "two"
    assert upd["record_id"] == by_name["name 2"]["record_id"]
    assert upd["source_app_id"] == connector_app_id
    gone = next(g["data"] for g in later if g["type"].endswith("deleted"))
    assert gone["record_id"] == by_name["name 1"]["record_id"]
    assert gone["data"] is None and gone["version"] == 2
    assert len(second_receiver.requests) == 1  # still no echo to the connector's app

    # every pulled change has its Connec event, beside its record event
    pulled = [p for _t, p in events(store_url, "connec.") if p["source"] == name]
    assert len(pulled) == len(events(store_url, "record.")) == 5
