"""On-demand requests (``mno.store.requests``) under real ``mno agents run`` processes:
``mno billing run --async --wait`` and ``mno sync run CONNECTION --async --wait`` are
done by the woken biller/poller, two pollers do each request once, and a rolled-back
request neither exists nor wakes anyone.

The agents run with a 60 s interval: after their start-up pass, only a wake-up can
start a pass before that (a request done while ``--wait``'s 45 s timeout runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mno.store import requests
from mno.store.db import session_scope
from tests.processes import stop as _stop
from tests.processes import wait_until as _wait
from tests.sync.api import Api
from tests.sync.conftest import World

pytestmark = pytest.mark.slow


def _start(url: str, tmp_path: Path, agent: str, n: int = 0) -> subprocess.Popen[str]:
    cfg = tmp_path / f"agents-{agent}.yaml"
    cfg.write_text(
        "heartbeat: 1s\n"
        "agents:\n"
        f"  {agent}:\n"
        "    interval: 60s\n"
        "    batch_size: 20\n"
        "    concurrency: 4\n"
        "    lease: 5m\n"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(cfg), "--only", agent],
        env=dict(os.environ, MNO_DB_URL=url, NO_COLOR="1"),
        stdout=(tmp_path / f"{agent}-{n}.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def _passes_since(url: str, agent: str, since: datetime) -> Counter[str]:
    with session_scope(url, write=False) as s:
        rows = s.execute(
            sa.text("SELECT owner, started_at FROM agent_tick WHERE agent = :a"), {"a": agent}
        ).all()
    out: Counter[str] = Counter()
    for owner, started in rows:
        if isinstance(started, str):
            started = datetime.fromisoformat(started)
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        if started > since:
            out[owner] += 1
    return out


def _ready(url: str, agent: str, procs: int) -> datetime:
    """Wait until every process has run its start-up pass; the time after it."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    assert _wait(lambda: len(_passes_since(url, agent, epoch)) >= procs, 90)
    time.sleep(1.0)  # the listeners are up before the start-up pass ends
    return datetime.now(UTC)


def _mno(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mno", *args],
        env=dict(os.environ, MNO_DB_URL=url, NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _requests(url: str) -> list[dict[str, Any]]:
    with session_scope(url, write=False) as s:
        rows = s.execute(sa.text("SELECT id, kind, status, attempts FROM agent_request")).all()
    return [dict(r._mapping) for r in rows]


def _events(url: str, event_type: str) -> int:
    with session_scope(url, write=False) as s:
        return int(
            s.execute(
                sa.text("SELECT count(*) FROM outbox_event WHERE type = :t"), {"t": event_type}
            ).scalar_one()
        )


def test_billing_run_async_wait_is_done_by_the_woken_biller(store_url: str, tmp_path: Path) -> None:
    from mno.tenancy import tenants

    with session_scope(store_url) as s:
        tenants.create(s, "acme")
    proc = _start(store_url, tmp_path, "biller")
    try:
        since = _ready(store_url, "biller", 1)
        r = _mno(
            store_url,
            "billing", "run", "--period", "2026-10", "--async", "--wait", "--timeout", "45s",
            "-o", "json",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        view = json.loads(r.stdout)
        assert view["kind"] == "billing_run" and view["status"] == "done"
        assert view["result"]["period"] == "2026-10" and view["result"]["run"]
        assert _passes_since(store_url, "biller", since)  # a woken pass did it
    finally:
        _stop(proc)
    with session_scope(store_url, write=False) as s:
        runs = s.execute(
            sa.text("SELECT count(*) FROM billing_run WHERE period = '2026-10'")
        ).scalar_one()
    assert runs == 1  # (the biller's own start-up pass billed the last closed month)
    assert [q["status"] for q in _requests(store_url)] == ["done"]
    assert _events(store_url, "request.queued") == _events(store_url, "request.finished") == 1


def test_async_without_an_agent_queues_and_wait_refuses(store_url: str) -> None:
    r = _mno(store_url, "billing", "run", "--period", "2026-10", "--async", "-o", "json")
    assert r.returncode == 0, r.stderr
    queued = json.loads(r.stdout)
    assert queued["status"] == "pending"
    r = _mno(store_url, "billing", "run", "--async", "--wait")
    assert r.returncode == 3 and "no biller is running" in r.stderr
    r = _mno(store_url, "billing", "run", "--wait")
    assert r.returncode == 2
    r = _mno(store_url, "billing", "run", "--period", "2026-13", "--async")
    assert r.returncode == 2
    r = _mno(store_url, "sync", "run", "nosuch", "--async")
    assert r.returncode != 0
    assert [q["status"] for q in _requests(store_url)] == ["pending"]  # only the first


def _world(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    w = World(store_url, tmp_path, monkeypatch)
    w.setup()
    return w


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_two_pollers_both_wake_and_each_sync_request_is_done_once(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(store_url, tmp_path, monkeypatch)
    names = []
    try:
        for code in ("crm", "books", "shop"):
            world.connector(code, code, Api(records=7), size=5)
            names.append(world.connect(code))
        procs = [_start(store_url, tmp_path, "poller", n) for n in (1, 2)]
        try:
            since = _ready(store_url, "poller", 2)
            with session_scope(store_url) as s:
                ids = [
                    requests.enqueue(s, "sync_run", {"connection": n, "full": True}).id
                    for n in names
                ]
            done = lambda: all(q["status"] == "done" for q in _requests(store_url))  # noqa: E731
            assert _wait(done, 45), _requests(store_url)
            assert _wait(lambda: len(_passes_since(store_url, "poller", since)) == 2, 30)
        finally:
            _stop(*procs)
    finally:
        world.close()
    rows = _requests(store_url)
    assert sorted(str(q["id"]) for q in rows) == sorted(str(i) for i in ids)
    assert all(q["attempts"] == 1 for q in rows)  # each claimed once
    with session_scope(store_url) as s:
        results = [requests.get(s, i).result or {} for i in ids]
        records = s.execute(sa.text("SELECT count(*) FROM sync_record")).scalar_one()
    # one run per request (the pollers' own schedule may add runs of these connections)
    assert len({r["id"] for r in results}) == 3 and {r["status"] for r in results} == {"success"}
    assert records == 21
    assert _events(store_url, "request.finished") == 3


def test_sync_run_async_wait_and_a_rollback_wakes_nobody(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(store_url, tmp_path, monkeypatch)
    try:
        api = Api(records=12)
        world.connector("crm", "crm", api, size=5)
        name = world.connect("crm")
        proc = _start(store_url, tmp_path, "poller")
        try:
            since = _ready(store_url, "poller", 1)
            with pytest.raises(RuntimeError), session_scope(store_url) as s:
                requests.enqueue(s, "sync_run", {"connection": name})
                raise RuntimeError("roll back")
            time.sleep(3)  # a wake-up would have started a pass by now
            assert not _passes_since(store_url, "poller", since)
            assert _requests(store_url) == []
            r = _mno(store_url, "sync", "run", name, "--async", "--wait", "--timeout", "45s")
            assert r.returncode == 0, r.stderr
            assert "done" in r.stdout
            api.refuse = 401  # the next run fails: --wait says so and exits 1
            r = _mno(store_url, "sync", "run", name, "--async", "--wait", "--timeout", "45s")
            assert r.returncode == 1 and "failed" in r.stderr, (r.stdout, r.stderr)
        finally:
            _stop(proc)
    finally:
        world.close()
    assert sorted(q["status"] for q in _requests(store_url)) == ["done", "failed"]
    with session_scope(store_url, write=False) as s:
        assert s.execute(sa.text("SELECT count(*) FROM sync_record")).scalar_one() == 12
