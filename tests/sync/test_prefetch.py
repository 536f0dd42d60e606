"""Pages fetched ahead of the writer (and, on SQLite, written together): a failed fetch
keeps every page before it and the checkpoint, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.sync.api import Api


def _count(url: str, sql: str) -> int:
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_failed_fetch_keeps_the_pages_before_it_and_resumes_there(world: Any) -> None:
    api = Api(records=100)
    world.connector("crm", "crm", api, size=10)
    name = world.connect("crm")
    orig = api.listing
    calls = {"n": 0}

    def flaky(since: str | None) -> list[dict[str, Any]]:
        calls["n"] += 1
        if calls["n"] == 5:  # the requests after the fifth page fail: the sixth page
            api.fail = -1
        return orig(since)

    api.listing = flaky  # type: ignore[method-assign]
    run = world.run(name)
    assert run.status == "error"
    # the five pages before the failure are stored, with the checkpoint after them
    assert _count(world.url, "SELECT count(*) FROM sync_record") == 50
    assert _count(world.url, "SELECT count(*) FROM sync_change WHERE action='create'") == 50
    assert run.counts["created"] == 50 and run.counts["pages"] == 5
    api.fail = 0
    api.listing = orig  # type: ignore[method-assign]
    before = api.requests
    run = world.run(name, force=True)
    assert run.status == "success", run.error
    assert run.counts["created"] == 50 and run.counts["pages"] == 6  # the last one empty
    assert api.requests - before == 6  # from the sixth page on, no page twice
    assert _count(world.url, "SELECT count(DISTINCT external_id) FROM sync_id_map") == 100
    assert _count(world.url, "SELECT count(*) FROM sync_id_map") == 100
    assert _count(world.url, "SELECT count(*) FROM outbox_event WHERE type='record.created'") == 100
