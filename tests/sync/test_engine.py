"""Sync engine against real HTTP servers on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.sync.api import Api


def _count(url: str, sql: str) -> int:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


@pytest.mark.parametrize("style", ["page", "offset", "cursor", "link"])
def test_initial_then_incremental(world, style: str) -> None:
    api = Api(records=45)
    world.connector("crm", "crm", api, style=style, size=10)
    name = world.connect("crm")
    run = world.run(name)
    assert run.status == "success", run.error
    assert run.counts["created"] == 45
    assert len(world.records()) == 45
    assert _count(world.url, "SELECT count(*) FROM sync_id_map") == 45
    assert _count(world.url, "SELECT count(*) FROM outbox_event WHERE type='record.created'") == 45
    # incremental: only changed records come back, unchanged ones are skipped by hash
    api.edit("c3", name="Changed")
    api.edit("c7", fetched_at=1.0)  # a volatile ignored field: no churn
    api.create(name="New", email="NEW@X.TEST")
    before = api.requests
    run = world.run(name)
    assert run.status == "success", run.error
    assert run.counts.get("created") == 1 and run.counts.get("updated") == 1
    assert run.counts["fetched"] <= 4  # the cursor filtered the rest out
    assert api.requests - before <= 2
    data = {r.data["name"]: r for r in world.records()}
    assert "Changed" in data and data["New"].data["email"] == "new@x.test"
    assert data["Changed"].version == 2


def test_deletes_by_flag_deleted_since_and_full_sync(world) -> None:
    a, b = Api(records=5), Api(records=5, name_prefix="d")
    world.connector("crm", "crm", a, deleted="flag")
    world.connector("books", "books", b, deleted="path")
    crm, books = world.connect("crm", push=False), world.connect("books", push=False)
    world.run(crm)
    world.run(books)
    a.delete("c1")
    b.delete("d2", soft=False)
    assert world.run(crm).counts.get("deleted") == 1
    assert world.run(books).counts.get("deleted") == 1
    # a hard delete without a deleted-since record is found only by a full sync
    with a.lock:
        del a.rows["c4"]
    assert not world.run(crm).counts.get("deleted")
    run = world.run(crm, full=True)
    assert run.counts.get("deleted") == 1
    assert len(world.records()) == 10 - 3
    assert _count(world.url, "SELECT count(*) FROM outbox_event WHERE type='record.deleted'") == 3


def test_interrupted_full_sync_deletes_nothing(world) -> None:
    api = Api(records=30)
    world.connector("crm", "crm", api, size=10)
    name = world.connect("crm")
    world.run(name)
    with api.lock:
        del api.rows["c30"]
    # fail the third page of the full pass: the first two pages commit, nothing is swept
    api.throttle_every = 0
    orig = api.listing
    calls = {"n": 0}

    def flaky(since):
        calls["n"] += 1
        if calls["n"] == 2:
            api.fail = -1
        return orig(since)

    api.listing = flaky  # type: ignore[method-assign]
    run = world.run(name, full=True)
    assert run.status == "error"
    assert len(world.records()) == 30
    api.fail = 0
    api.listing = orig  # type: ignore[method-assign]
    run = world.run(name, full=True, force=True)
    assert run.status == "success", run.error
    assert run.counts.get("deleted") == 1
    assert len(world.records()) == 29


def test_conflict_newest_wins_and_is_recorded(world) -> None:
    a, b = Api(records=3), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm, books = world.connect("crm"), world.connect("books")
    world.run(crm)  # creates 3 records and pushes them to books
    assert len(b.rows) == 3
    world.run(books)  # echoes only
    # both sides change c1's twin: books later, so books wins
    a.edit("c1", name="from crm")
    twin = next(r for r in b.rows.values() if r["email"] == "u1@x.test")
    b.edit(twin["id"], name="from books")
    world.run(crm)  # propagation runs books: pull (conflict), then push
    rows = {r.data["email"]: r for r in world.records()}
    assert rows["u1@x.test"].data["name"] == "from books"
    assert _count(world.url, "SELECT count(*) FROM sync_conflict WHERE winner='app'") == 1


def test_conflict_preemption_platform(world) -> None:
    a, b = Api(records=1), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm = world.connect("crm")
    world.connect("books", preemption="platform")
    world.run(crm)
    twin = next(iter(b.rows))
    a.edit("c1", name="platform side")
    b.edit(twin, name="app side")  # newer, but the connection says platform wins
    world.run(crm)
    assert world.records()[0].data["name"] == "platform side"
    assert b.rows[twin]["name"] == "platform side"  # the app was corrected
    assert _count(world.url, "SELECT count(*) FROM sync_conflict WHERE winner='platform'") == 1
    assert (
        _count(world.url, "SELECT count(*) FROM sync_conflict WHERE rule='preemption:platform'")
        == 1
    )


def test_propagation_a_to_b_without_echo(world) -> None:
    a, b = Api(records=4), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm, books = world.connect("crm"), world.connect("books")
    world.run(crm)
    assert len(b.rows) == 4 and all(m == "POST" for m, _, _ in b.writes)
    run = world.run(books)
    assert not run.counts.get("created") and not run.counts.get("updated")
    assert run.counts.get("unchanged", 0) + run.counts.get("echo", 0) == 4
    assert len(world.records()) == 4
    # an edit in A reaches B as an update; pulling B afterwards is again an echo
    a.edit("c2", phone="+1 555")
    world.run(crm)
    puts = [w for w in b.writes if w[0] == "PUT"]
    assert len(puts) == 1 and puts[0][2]["phone"] == "+1 555"
    run = world.run(books)
    assert not run.counts.get("updated")
    # and nothing goes back to A
    assert a.writes == []
    events = _count(world.url, "SELECT count(*) FROM outbox_event WHERE type LIKE 'record.%'")
    assert events == 5


def test_rate_limit_retry_after_is_honoured(world) -> None:
    import time

    api = Api(records=60)
    api.throttle_every = 3
    api.retry_after = 1
    world.connector("crm", "crm", api, size=10)
    name = world.connect("crm")
    from mno.sync import engine

    run = engine.run(name, db_url=world.url, sleep=time.sleep)
    assert run.status == "success", run.error
    assert len(world.records()) == 60
    assert api.throttled >= 2
    assert api.too_early == 0


def test_recovery_mode_after_three_failures(world) -> None:
    from mno import clock
    from mno.errors import Conflict

    api = Api(records=5)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    api.fail = -1
    for _ in range(3):
        assert world.run(name).status == "error"
    api.fail = 0
    with pytest.raises(Conflict, match="recovery mode"):
        world.run(name)
    assert world.run(name, force=True).status == "success"
    # three more failures, then the 24 h window passes
    api.fail = -1
    for _ in range(3):
        world.run(name, force=True)
    api.fail = 0
    clock.set_now(clock.now() + __import__("datetime").timedelta(hours=25))
    assert world.run(name).status == "success"


def test_runs_never_overlap(world) -> None:
    from mno.errors import Conflict
    from mno.store import leases
    from mno.store.db import session_scope
    from mno.sync import connections, engine

    api = Api(records=2)
    world.connector("crm", "crm", api)
    name = world.connect("crm")
    with session_scope(world.url) as s:
        cid = connections.get(s, name).id
        assert leases.acquire_lock(s, engine.lock_name(cid), "other-host", engine.LOCK_TTL)
    with pytest.raises(Conflict, match="already syncing"):
        world.run(name)


def test_rollback_and_refusal(world) -> None:
    from mno.errors import Conflict
    from mno.store.db import session_scope
    from mno.sync import rollback

    a, b = Api(records=3), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm = world.connect("crm")
    world.connect("books")
    world.run(crm)
    a.edit("c1", name="bad 1")
    a.edit("c2", name="bad 2")
    bad = world.run(crm)
    assert bad.counts["updated"] == 2
    a.edit("c2", name="later")
    world.run(crm)
    with session_scope(world.url) as s, pytest.raises(Conflict, match="later runs changed 1"):
        rollback.rollback(s, bad.id)
    with session_scope(world.url) as s:
        plan = rollback.rollback(s, bad.id, dry_run=True, force=True)
    assert len(plan.items) == 2 and not plan.applied
    assert {r.data["name"] for r in world.records()} == {"bad 1", "later", "name 3"}
    with session_scope(world.url) as s:
        done = rollback.rollback(s, bad.id, force=True)
    assert done.applied
    assert {r.data["name"] for r in world.records()} == {"name 1", "name 2", "name 3"}
    from mno.sync import engine

    with session_scope(world.url, write=False) as s:
        tenant_id = world.records()[0].tenant_id
    engine.deliver_tenant(tenant_id, "test", db_url=world.url)
    assert a.rows["c1"]["name"] == "name 1"  # pushed back to the source app
    assert sorted(r["name"] for r in b.rows.values()) == ["name 1", "name 2", "name 3"]
    # the restored state pulled back from crm is an echo, not a new change
    run = world.run(crm)
    assert not run.counts.get("updated")


def test_delete_propagates_without_echo(world) -> None:
    a, b = Api(records=3), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm, books = world.connect("crm"), world.connect("books")
    world.run(crm)
    a.delete("c2")
    world.run(crm)
    deletes = [w for w in b.writes if w[0] == "DELETE"]
    assert len(deletes) == 1
    assert sum(1 for r in b.rows.values() if r["is_deleted"]) == 1
    run = world.run(books)  # the soft-deleted twin comes back flagged: already deleted
    assert not run.counts.get("deleted")
    assert len(world.records()) == 2
    assert _count(world.url, "SELECT count(*) FROM outbox_event WHERE type='record.deleted'") == 1


def test_one_entity_failing_makes_a_partial_run(world) -> None:
    from mno.store.db import session_scope
    from mno.sync import spec

    api = Api(records=3)
    server = world.serve(api)
    text = f"""name: two
app: crm
base_url: {server.url}
entities:
  - canonical: contact
    list: {{path: /page/contacts}}
    records: data
    pagination: {{type: page, param: page, size_param: limit, size: 10}}
    mapping: {{name: name}}
  - canonical: organization
    list: {{path: /missing/orgs}}
    mapping: {{name: name}}
"""
    with session_scope(world.url) as s:
        spec.apply(s, spec.parse(text, "two.yaml"))
    name = world.connect("two")
    run = world.run(name)
    assert run.status == "partial"
    assert "organization" in (run.error or "") and "404" in run.error
    assert len(world.records()) == 3
    # a partial run is not a failure for recovery mode
    from mno.sync import connections

    with session_scope(world.url) as s:
        assert connections.get(s, name).consecutive_failures == 0


def test_history_gives_a_create_its_after_state(world) -> None:
    """A pulled create is stored as a compact change row; its after-state is the record's
    first version, read back from the next change or from the record itself."""
    import json

    from mno.store.db import session_scope
    from mno.sync import engine

    api = Api(records=3)
    world.connector("crm", "crm", api, size=10)
    name = world.connect("crm")
    assert world.run(name).status == "success"
    rec = {r.data["email"]: r for r in world.records()}["u2@x.test"]
    first = dict(rec.data)
    with session_scope(world.url, write=False) as s:
        (created,) = list(engine.iter_changes(s, rec.id))
    assert created.action == "create" and created.before is None and created.after == first
    with session_scope(world.url, write=False) as s:
        payloads = [
            json.loads(p) if isinstance(p, str) else p
            for (p,) in s.connection().execute(
                sa.text("SELECT payload FROM outbox_event WHERE type = 'record.created'")
            )
        ]
    mine = [p for p in payloads if p["record_id"] == str(rec.id)]
    assert len(mine) == 1 and mine[0]["data"] == first and mine[0]["version"] == 1
    api.edit("c2", name="Renamed")
    assert world.run(name).status == "success"
    with session_scope(world.url, write=False) as s:
        created, updated = list(engine.iter_changes(s, rec.id))
    assert created.after == first and updated.before == first
    assert updated.after["name"] == "Renamed"


def test_page_commits_wait_for_the_wal_flush_only_when_configured(world, mno_env) -> None:
    """PostgreSQL page transactions commit without waiting for the WAL flush unless the
    profile sets ``sync.synchronous_commit``; the setting is local to each page."""
    from mno.store import db

    engine = db.get_engine(world.url)
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting")
    seen: list[str] = []

    def page_setting(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        # the cursor's checkpoint and the run's counts close each page transaction
        if "UPDATE sync_cursor" in statement and "UPDATE sync_run" in statement:
            # on a cursor of its own: the statement's result is still to be read
            seen.append(cursor.connection.execute("SHOW synchronous_commit").fetchone()[0])

    api = Api(records=25)
    world.connector("crm", "crm", api, size=10)
    name = world.connect("crm", push=False)
    sa.event.listen(engine, "after_cursor_execute", page_setting)
    try:
        assert world.run(name).status == "success"
        (mno_env / "config.yaml").write_text(
            "profiles:\n  default:\n    sync: {synchronous_commit: true}\n"
        )
        api.edit("c3", name="Changed")
        assert world.run(name).counts.get("updated") == 1
    finally:
        sa.event.remove(engine, "after_cursor_execute", page_setting)
    # three pages, then one: the setting held in each page transaction only
    assert seen == ["off", "off", "off", "on"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == "on"


def test_connection_remove_waits_for_a_page_and_leaves_no_orphans(world) -> None:
    """The hot tables check their connection once per page: a page transaction locks the
    connection row, so a removal waits for it and then deletes what it wrote; a page
    after the removal writes nothing; the tenant of synced records cannot be deleted."""
    import threading

    from mno.errors import Conflict
    from mno.store.db import session_scope
    from mno.store.models.sync import SyncIdMap
    from mno.sync import connections, engine
    from mno.tenancy import tenants

    world.connector("crm", "crm", Api(records=3))
    name = world.connect("crm", push=False)
    assert world.run(name).status == "success"
    record_id = world.records()[0].id
    with session_scope(world.url) as s:
        row = connections.get(s, name)
        s.expunge(row)
    written, removed, failures = threading.Event(), threading.Event(), []

    def page() -> None:
        try:
            with session_scope(world.url) as s:
                engine.hold_connection(s.connection(), row)
                s.add(
                    SyncIdMap(
                        connection_id=row.id,
                        entity="contact",
                        external_id="late",
                        record_id=record_id,
                    )
                )
                s.flush()
                written.set()
                removed.wait(1.0)  # give the removal time to reach the lock
        except Exception as exc:  # noqa: BLE001
            failures.append(exc)
            written.set()

    def remove() -> None:
        with session_scope(world.url) as s:
            connections.remove(s, name)
        removed.set()

    writer = threading.Thread(target=page)
    writer.start()
    assert written.wait(30)
    remover = threading.Thread(target=remove)
    remover.start()
    writer.join(30)
    remover.join(30)
    assert not failures and removed.is_set()
    assert _count(world.url, "SELECT count(*) FROM sync_id_map") == 0
    assert _count(world.url, "SELECT count(*) FROM sync_connection") == 0
    with session_scope(world.url) as s, pytest.raises(Conflict, match="was removed"):
        engine.hold_connection(s.connection(), row)
    with session_scope(world.url) as s, pytest.raises(Conflict, match="has synced records"):
        tenants.delete(s, "acme")
    assert _count(world.url, "SELECT count(*) FROM sync_record") == 3


def test_a_run_whose_connection_is_removed_mid_page_leaves_nothing_behind(world) -> None:
    """The connection is removed while a page of a real run is being written: the page
    either commits first and is removed with the rest, or finds the connection gone when
    it closes and rolls back. Either way the run stops with an error, no id map, cursor
    or push of the connection is left, and the run is kept as history."""
    import threading

    from mno.store.db import session_scope
    from mno.sync import connections, pull

    world.connector("crm", "crm", Api(records=40), size=10)
    name = world.connect("crm", push=False)
    real, removers = pull.apply_page, []

    def remove() -> None:
        with session_scope(world.url) as s:
            connections.remove(s, name)

    def apply_page(session, ctx, items, token, **kw):  # type: ignore[no-untyped-def]
        real(session, ctx, items, token, **kw)
        if not removers:  # during the first page: the removal starts before it closes
            removers.append(threading.Thread(target=remove))
            removers[0].start()
            removers[0].join(0.5)  # PostgreSQL: it commits before this page closes

    world.monkeypatch.setattr(pull, "apply_page", apply_page)
    run = world.run(name)
    removers[0].join(30)
    assert run.status == "error" and "was removed" in (run.error or ""), run.error
    for table in ("sync_connection", "sync_id_map", "sync_cursor", "sync_push"):
        assert _count(world.url, f"SELECT count(*) FROM {table}") == 0, table
    # the run stays as history, detached from the removed connection; its lock is gone
    assert _count(world.url, "SELECT count(*) FROM sync_run WHERE connection_id IS NULL") == 1
    assert _count(world.url, "SELECT count(*) FROM lease_lock WHERE name LIKE 'sync:%'") == 0


def test_values_with_escapes_round_trip(world) -> None:
    """External ids and fields holding backslashes, tabs, line breaks, quotes, control
    and non-ASCII characters are stored exactly (the bulk write escapes them)."""
    import json

    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.core import Event
    from mno.store.models.sync import SyncIdMap

    odd = 'a\\b\tc\nd\re "f" \\N é \u0001 \\\\t'
    api = Api(name_prefix=odd)
    for i in range(3):
        api.create(name=f"{odd}{i}", email="X@Y.TEST", phone="\\")
    world.connector("crm", "crm", api, size=2)
    name = world.connect("crm", push=False)
    assert world.run(name).counts["created"] == 3
    names = sorted(r.data["name"] for r in world.records())
    assert names == [f"{odd}{i}" for i in range(3)]
    assert {r.data["phone"] for r in world.records()} == {"\\"}
    with session_scope(world.url, write=False) as s:
        ids = sorted(s.exec(select(SyncIdMap.external_id)))
        payloads = list(s.exec(select(Event.payload).where(Event.type == "record.created")))
    assert ids == sorted(api.rows)
    assert sorted(p["data"]["name"] for p in payloads) == names
    assert json.loads(json.dumps(payloads[0]))["source"] == name
    # unchanged on the next run: the stored hashes match what is pulled again
    api.edit(ids[0], name="changed")
    again = world.run(name)
    assert again.counts.get("updated") == 1 and not again.counts.get("created")


def test_initial_sync_meets_an_id_again_on_a_later_page(world) -> None:
    """An initial sync skips the lookup of ids it has not mapped yet; a record edited
    during the pass comes back on a later page and is found, not created twice."""
    api = Api(records=6)
    world.connector("crm", "crm", api, size=2)
    name = world.connect("crm", push=False)
    pages: list[int] = []

    def progress(_entity: str, n: int) -> None:
        pages.append(n)
        if len(pages) == 1:
            api.edit("c1", name="moved to the end")

    run = world.run(name, progress=progress)
    assert run.status == "success", run.error
    assert run.counts.get("updated") == 1
    assert _count(world.url, "SELECT count(*) FROM sync_id_map") == run.counts["created"]
    assert {r.data["name"] for r in world.records()} >= {"moved to the end"}


def test_a_failed_page_stops_the_pages_after_it(world) -> None:
    """A page that fails to write takes the pages written meanwhile down with it (on
    PostgreSQL later pages are written on other connections while the one before them
    commits): the checkpoint and the counts stay at the last whole page, and the next run
    resumes there with no loss and no duplicates. (On SQLite the pages fetched ahead are
    written in one transaction with the one before them, so the failing page may take
    the pages of its transaction down too: still whole pages.)"""
    import time

    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.sync import SyncCursor
    from mno.sync import pull

    api = Api(records=60)
    world.connector("crm", "crm", api, size=10)
    name = world.connect("crm", push=False)
    real = pull.apply_page

    def apply_page(session, ctx, items, token, **kw):  # type: ignore[no-untyped-def]
        if any(it.external_id == "c21" for it in items):  # the third page
            time.sleep(0.3)  # later pages are written meanwhile, where they can be
            raise RuntimeError("disk full")
        real(session, ctx, items, token, **kw)

    world.monkeypatch.setattr(pull, "apply_page", apply_page)
    run = world.run(name)
    assert run.status == "error" and "disk full" in (run.error or "")
    stored = _count(world.url, "SELECT count(*) FROM sync_record")
    # the two pages before the failing one (PostgreSQL writes them apart)
    assert stored == 20 or (world.url.startswith("sqlite") and stored in (0, 10))
    assert run.counts.get("created", 0) == stored and run.counts.get("pages", 0) == stored // 10
    with session_scope(world.url, write=False) as s:
        cursor = s.exec(select(SyncCursor)).one()
    assert cursor.checkpoint["position"] == ({"page": stored // 10 + 1} if stored else {})
    world.monkeypatch.setattr(pull, "apply_page", real)
    run = world.run(name)
    assert run.status == "success", run.error
    assert run.counts["created"] == 60 - stored
    assert _count(world.url, "SELECT count(*) FROM sync_record") == 60
    assert _count(world.url, "SELECT count(DISTINCT external_id) FROM sync_id_map") == 60
    created = "SELECT count(*) FROM outbox_event WHERE type = 'record.created'"
    assert _count(world.url, created) == 60


def test_incremental_meets_an_id_again_while_its_page_is_written(world) -> None:
    """Pages of an incremental pass are written side by side on PostgreSQL when their
    external ids differ; a page holding an id of a page still being written waits for
    it, so the id is found and updated, never mapped twice."""
    import time

    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.sync import SyncChange
    from mno.sync import pull

    api = Api(records=4)
    world.connector("crm", "crm", api, size=2)
    name = world.connect("crm", push=False)
    assert world.run(name).status == "success"
    for i in range(1, 5):
        api.edit(f"c{i}", name=f"edit {i}")
    real, fetched = pull.apply_page, []

    def slow_apply(session, ctx, items, token, **kw):  # type: ignore[no-untyped-def]
        real(session, ctx, items, token, **kw)
        if any(it.external_id == "c1" for it in items) and not fetched:
            time.sleep(0.5)  # page 1 stays uncommitted while page 3 arrives

    def progress(_entity: str, n: int) -> None:
        fetched.append(n)

    real_fetch = pull.fetch_page

    def fetch_page(client, entity, since, position):  # type: ignore[no-untyped-def]
        if position.get("page") == 2:
            api.edit("c1", name="edited again")  # c1 (page 1) comes back on page 3
        return real_fetch(client, entity, since, position)

    world.monkeypatch.setattr(pull, "apply_page", slow_apply)
    world.monkeypatch.setattr(pull, "fetch_page", fetch_page)
    run = world.run(name, progress=progress)
    assert run.status == "success", run.error
    assert _count(world.url, "SELECT count(*) FROM sync_id_map") == 4
    assert _count(world.url, "SELECT count(*) FROM sync_record") == 4
    c1 = next(r for r in world.records() if r.data["name"] == "edited again")
    assert c1.version == 3  # created, then updated by page 1 and by page 3, in turn
    with session_scope(world.url, write=False) as s:
        changes = list(
            s.exec(select(SyncChange).where(SyncChange.record_id == c1.id).order_by(SyncChange.seq))
        )
    assert [c.action for c in changes] == ["create", "update", "update"]
    assert changes[2].before == changes[1].after  # the second update saw the first
    assert run.counts.get("created", 0) == 0


def test_pages_are_written_with_quick_switches_and_fewer_collections(world) -> None:
    """While a run writes pages, a thread waiting for the GIL gets it sooner and young
    objects are collected less often; both are restored afterwards, also when the run
    fails."""
    import gc
    import sys

    api = Api(records=5)
    world.connector("crm", "crm", api, size=2)
    name = world.connect("crm", push=False)
    before = sys.getswitchinterval(), gc.get_threshold()
    during: list[tuple[float, tuple[int, ...]]] = []

    def progress(_entity: str, _n: int) -> None:
        during.append((sys.getswitchinterval(), gc.get_threshold()))

    assert world.run(name, progress=progress).status == "success"
    assert during and all(s < before[0] and t[0] > before[1][0] for s, t in during)
    assert (sys.getswitchinterval(), gc.get_threshold()) == before
    api.fail = -1
    api.edit("c1", name="again")
    assert world.run(name).status == "error"
    assert (sys.getswitchinterval(), gc.get_threshold()) == before


def test_sqlite_backfill_copies_the_log_into_the_database(tmp_path) -> None:
    """The backfill thread checkpoints the write-ahead log beside the writer: the rows
    reach the database file while the writer's connection never checkpoints."""
    import sqlite3

    from mno.sync.page_writer import Backfill

    path = tmp_path / "wal.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("CREATE TABLE t (x TEXT)")
    writer.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,) for _ in range(2000)])
    before = path.stat().st_size
    backfill = Backfill(str(path))
    for _ in range(Backfill.EVERY):
        backfill.poke()
    backfill.close()
    assert before < 100_000 < path.stat().st_size  # some 2 MB of rows, now in the file
    writer.close()


def test_an_echo_counts_once_and_the_counter_settles(world) -> None:
    a, b = Api(records=4), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm, books = world.connect("crm"), world.connect("books")
    world.run(crm)  # creates 4 and pushes them to books
    first = world.run(books)
    assert first.counts.get("echo") == 4 and not first.counts.get("updated")
    # read again (a full pass, as a lookback window would): a steady state, no echo
    for _ in range(2):
        again = world.run(books, full=True)
        assert not again.counts.get("echo") and again.counts.get("unchanged") == 4
    # an edit in crm comes back from books once more, then settles again
    a.edit("c2", phone="+1 555")
    world.run(crm)
    assert world.run(books, full=True).counts.get("echo") == 1
    assert not world.run(books, full=True).counts.get("echo")


def test_an_echo_read_again_is_not_counted_again(world) -> None:
    """The app keeps a version pushed to it while the record moved on (its connection
    stopped pushing): every full pass reads that echo again, and counts it once."""
    from mno.store.db import session_scope
    from mno.sync import connections

    a, b = Api(records=2), Api(records=0, name_prefix="b")
    world.connector("crm", "crm", a)
    world.connector("books", "books", b)
    crm, books = world.connect("crm"), world.connect("books")
    world.run(crm)
    world.run(books)
    with session_scope(world.url) as s:
        connections.update(s, books, push=False)
    a.edit("c1", name="moved on")
    world.run(crm)
    counted = [world.run(books, full=True).counts.get("echo", 0) for _ in range(3)]
    assert counted == [0, 0, 0]


def test_on_progress_counts_the_records_pulled(world) -> None:
    """``on_progress(done, None)`` hears of each page with the running count."""
    api = Api(records=5)
    world.connector("crm", "crm", api, size=2)
    name = world.connect("crm", push=False)
    calls: list[tuple[int, int | None]] = []
    run = world.run(name, on_progress=lambda done, total: calls.append((done, total)))
    assert run.status == "success", run.error
    assert calls == [(2, None), (4, None), (5, None)]
