"""A backlog is drained at once: a pass that claimed a full batch is followed by another
without waiting for the interval (60 s here, longer than the test waits), and each item
is still handled once."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from mno.agents import probe
from mno.store.db import session_scope
from tests.agents.test_requests import _start, _stop, _wait

pytestmark = pytest.mark.slow


def _done(url: str) -> tuple[int, int]:
    with session_scope(url, write=False) as s:
        done = s.execute(
            sa.text("SELECT count(*) FROM agent_probe_item WHERE status = 'done'")
        ).scalar_one()
        effects = s.execute(sa.text("SELECT count(*) FROM agent_probe_effect")).scalar_one()
    return int(done), int(effects)


def test_a_backlog_drains_without_waiting_for_the_interval(store_url: str, tmp_path: Path) -> None:
    with session_scope(store_url) as s:
        probe.enqueue(s, 500)
    proc = _start(store_url, tmp_path, "probe")  # batch_size 20, interval 60s
    try:
        assert _wait(lambda: _done(store_url)[0] == 500, 45), _done(store_url)
    finally:
        _stop(proc)
    assert _done(store_url) == (500, 500)
