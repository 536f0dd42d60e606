"""The housekeeper prunes what retention says, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from mno import clock
from mno.agents import housekeeper, probe
from mno.agents.base import TickContext
from mno.store import cursors
from mno.store.models.agents import AgentTick, Heartbeat, ProbeItem
from mno.store.models.core import AuditEntry, Event
from mno.tenancy import tenants


def _count(s, model) -> int:
    return s.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def _seed(session) -> None:
    now = clock.now()
    clock.set_now(now - timedelta(days=400))
    with session() as s:
        tenants.create(s, "old-one")  # 2 audit rows, 2 events, 400 days old
    clock.set_now(now - timedelta(days=40))
    with session() as s:
        tenants.create(s, "mid-one")  # 1 audit row, 1 event, 40 days old
        s.add(
            Heartbeat(
                owner="gone:1:x", host="gone", pid=1, started_at=clock.now(), last_beat=clock.now()
            )
        )
        s.add(AgentTick(agent="probe", owner="gone", started_at=clock.now(), outcome="ok"))
        probe.enqueue(s, 3)
    clock.set_now(now)
    with session() as s:
        tenants.create(s, "new-one")
        s.execute(sa.update(ProbeItem).values(lease_owner="gone", lease_until=now - timedelta(1)))


def test_prunes_by_retention(session):
    from datetime import timedelta

    from mno import clock
    from mno.store.models.agents import WorkRequest

    _seed(session)
    with session() as s:
        cursors.advance(s, "dispatcher", 10**9)
        old = clock.now() - timedelta(days=8)
        s.add(WorkRequest(kind="sync_run", status="done", finished_at=old))  # pruned
        s.add(WorkRequest(kind="sync_run", status="done", finished_at=clock.now()))
        s.add(WorkRequest(kind="sync_run"))  # pending: kept
    result = housekeeper.tick(TickContext(agent="housekeeper", db_url=None, batch_size=2))
    assert result.details == {
        "events": 3,
        "audit": 2,
        "heartbeats": 1,
        "ticks": 1,
        "requests": 1,
        "sync_pushes": 0,
        "sync_runs": 0,
        "previous_volumes": 0,
        "leases": 3,
    }
    with session(write=False) as s:
        assert _count(s, Event) == 1 and _count(s, AuditEntry) == 2
        assert _count(s, Heartbeat) == 0 and _count(s, AgentTick) == 0
        assert _count(s, WorkRequest) == 2
        assert (
            s.execute(
                sa.select(sa.func.count()).where(ProbeItem.lease_owner.is_not(None))
            ).scalar_one()
            == 0
        )  # type: ignore[union-attr]


def test_events_wait_for_every_consumer(session):
    _seed(session)
    with session(write=False) as s:
        oldest = s.execute(sa.select(sa.func.min(Event.seq))).scalar_one()
    with session() as s:
        cursors.advance(s, "dispatcher", 10**9)
        cursors.advance(s, "mailer", oldest)  # has read only the first event
    result = housekeeper.tick(TickContext(agent="housekeeper"))
    assert result.details["events"] == 1


def test_zero_keeps_audit_forever(session, mno_env):
    (mno_env / "platform.yaml").write_text("retention: {audit: '0', events: 30d}\n")
    from mno import platform

    platform.clear_cache()
    _seed(session)
    result = housekeeper.tick(TickContext(agent="housekeeper"))
    assert result.details.get("audit", 0) == 0
    with session(write=False) as s:
        assert _count(s, AuditEntry) == 4


def test_cli_tick(cli, session, store_url):
    _seed(session)
    out = cli.json("agents", "tick", "housekeeper")
    assert out["outcome"] == "ok" and out["details"]["audit"] == 2
    assert out["details"]["events"] == 3  # no consumer registered: age alone decides
