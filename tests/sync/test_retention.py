"""The housekeeper prunes old sync runs and finished pushes, on SQLite and PostgreSQL,
and keeps what rollback and pending pushes still need."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from tests.sync.api import Api


def _ids(url: str, sql: str) -> set[str]:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return {str(row[0]) for row in conn.execute(sa.text(sql))}


def test_housekeeper_prunes_old_runs_and_finished_pushes(world, mno_env) -> None:
    from mno import clock, platform
    from mno.agents import housekeeper
    from mno.agents.base import TickContext
    from mno.store.db import session_scope
    from mno.store.models.sync import SyncChange, SyncConflict, SyncPush, SyncRun
    from mno.sync import connections, rollback

    (mno_env / "platform.yaml").write_text("retention: {sync_runs: 30d, sync_pushes: 7d}\n")
    platform.clear_cache()
    a, b = Api(records=3), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm, books = world.connect("crm"), world.connect("books")
    now = clock.now()

    # 60 days ago: the initial sync; its pushes to books are delivered (done)
    clock.set_now(now - timedelta(days=60))
    r1 = world.run(crm)
    assert r1.status == "success" and len(b.rows) == 3
    with session_scope(world.url) as s:
        rec = s.execute(sa.select(SyncChange.record_id).where(SyncChange.run_id == r1.id)).first()
        s.add(
            SyncConflict(
                run_id=r1.id,
                record_id=rec[0],
                connection_id=r1.connection_id,
                entity="contact",
                winner="app",
                rule="newest",
            )
        )
        connections.set_paused(s, books, True)
    # 50 days ago: an edit whose push to the paused books stays pending
    clock.set_now(now - timedelta(days=50))
    a.edit("c1", name="Edited")
    r2 = world.run(crm)
    assert r2.status == "success" and r2.counts["updated"] == 1
    # 40 days ago: a failed run; yesterday: the latest run
    clock.set_now(now - timedelta(days=40))
    a.fail = -1
    r3 = world.run(crm)
    assert r3.status == "error"
    a.fail = 0
    clock.set_now(now - timedelta(days=1))
    a.edit("c2", name="Later")
    r4 = world.run(crm)
    assert r4.status == "success"
    clock.set_now(now)
    pushes_before = _ids(world.url, "SELECT status FROM sync_push")
    assert pushes_before == {"done", "pending"}

    result = housekeeper.tick(TickContext(agent="housekeeper", db_url=world.url, batch_size=2))

    runs = _ids(world.url, "SELECT id FROM sync_run")
    kept = {r.id.hex for r in (r2, r4)} | {str(r.id) for r in (r2, r4)}
    assert {str(r1.id), r1.id.hex, str(r3.id), r3.id.hex}.isdisjoint(runs)
    assert len(runs & kept) == 2  # r2 (a pending push) and r4 (the latest) stay
    assert len(runs) == 3  # and books' only run
    with session_scope(world.url, write=False) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(SyncConflict)).scalar_one() == 0
        changed = s.execute(sa.select(SyncChange.run_id).distinct()).scalars().all()
        assert set(changed) == {r2.id, r4.id}
        statuses = s.execute(sa.select(SyncPush.status)).scalars().all()
        assert statuses and set(statuses) == {"pending"}  # done pushes went, pending stay
        assert s.execute(sa.select(SyncRun.status).where(SyncRun.id == r2.id)).scalar_one()
    assert result.details["sync_pushes"] == 3 and result.details["sync_runs"] >= 5
    # a retained run can still be rolled back
    with session_scope(world.url) as s:
        done = rollback.rollback(s, r2.id)
    assert done.applied and done.items[0]["before"]["name"] == "name 1"


def test_zero_keeps_sync_history(world, mno_env) -> None:
    from mno import clock, platform
    from mno.agents import housekeeper
    from mno.agents.base import TickContext

    (mno_env / "platform.yaml").write_text("retention: {sync_runs: '0', sync_pushes: '0'}\n")
    platform.clear_cache()
    api = Api(records=2)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    now = clock.now()
    clock.set_now(now - timedelta(days=400))
    world.run(name)
    api.edit("c1", name="x")
    world.run(name)
    clock.set_now(now)
    result = housekeeper.tick(TickContext(agent="housekeeper", db_url=world.url))
    assert result.details["sync_runs"] == 0 and result.details["sync_pushes"] == 0
    assert len(_ids(world.url, "SELECT id FROM sync_run")) == 2
