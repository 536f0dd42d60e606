"""Hub API events: the outbox read by cursor, limited to the tenants the caller sees."""

from __future__ import annotations

import time

from tests.api_hub.conftest import both_stores


def _all(client, after: str = "0", limit: int = 3) -> tuple[list[dict], str]:
    events: list[dict] = []
    while True:
        r = client.get("/v1/hub/events", params={"after": after, "limit": limit})
        assert r.status_code == 200, r.text
        page = r.json()
        events += page["events"]
        after = page["next"]
        if "link" not in r.headers:
            return events, after


def test_events_follow_by_cursor(hub, world):
    op = hub.as_(world["op"])
    events, cursor = _all(op)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert {"tenant.created", "member.added"} <= {e["type"] for e in events}
    # nothing new: an empty page that keeps the cursor
    r = op.get("/v1/hub/events", params={"after": cursor})
    assert r.json() == {"events": [], "next": cursor}
    op.post("/v1/hub/tenants/acme/suspend", json={"reason": "arrears"})
    new, _ = _all(op, cursor)
    assert [e["type"] for e in new] == ["tenant.status_changed"]
    assert new[0]["payload"]["to"] == "suspended"
    assert new[0]["seq"] > int(cursor.split(":")[-1])


def _settled(client, want: int, limit: int) -> list[dict]:
    """Every event the client may read, once ``want`` of them are served: on PostgreSQL
    an event waits for the older transactions of the server (other databases' too)."""
    deadline = time.monotonic() + 120
    while True:
        events, _ = _all(client, limit=limit)
        if len(events) >= want or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


@both_stores
def test_a_member_reads_only_their_tenants_events(hub, world, session):
    from sqlmodel import col, func, select

    from mno.store.models.core import Event
    from mno.tenancy import tenants

    with session() as s:
        acme_id = tenants.get(s, "acme").id
        acme, globex = str(acme_id), str(tenants.get(s, "globex").id)
        of_acme = s.exec(select(func.count()).where(col(Event.tenant_id) == acme_id)).one()
        total = s.exec(select(func.count()).select_from(Event)).one()
    bob = hub.as_(world["bob"])
    events = _settled(bob, of_acme, limit=50)
    assert len(events) == of_acme
    assert {e["tenant_id"] for e in events} == {acme}
    op_events = _settled(hub.as_(world["op"]), total, limit=50)
    assert globex in {e["tenant_id"] for e in op_events}
    assert None in {e["tenant_id"] for e in op_events} or len(op_events) > len(events)


def test_events_need_their_scope(hub, world, token):
    r = hub.as_(token("owner@acme.io", "tenants:read")).get("/v1/hub/events")
    assert r.status_code == 403
    assert r.json()["detail"] == "this credential lacks the scope events:read"
    assert hub.client.get("/v1/hub/events").status_code == 401
    r = hub.as_(world["op"]).get("/v1/hub/events", params={"after": "x"})
    assert r.status_code == 422


def test_events_filter_by_type(hub, world):
    op = hub.as_(world["op"])
    op.post("/v1/hub/tenants/acme/suspend", json={"reason": "arrears"})
    events, _ = _all(op, limit=50)
    assert len({e["type"] for e in events}) > 1
    r = op.get("/v1/hub/events", params={"type": "tenant.status_changed", "limit": 50})
    assert [e["type"] for e in r.json()["events"]] == ["tenant.status_changed"]
    r = op.get("/v1/hub/events", params={"type": "tenant.*", "limit": 50})
    types = {e["type"] for e in r.json()["events"]}
    assert types == {"tenant.created", "tenant.status_changed"}
