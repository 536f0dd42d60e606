"""``mno billing run --issue`` killed at any point: the same command again issues every
draft once, with gapless numbers and one ledger entry per invoice (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from mno.billing import documents, subscriptions, usage
from mno.store.db import get_engine, session_scope
from mno.store.models.billing import Invoice, LedgerEntry
from mno.store.types import table_of
from mno.tenancy import tenants
from tests.billing.conftest import CATALOGUE

TENANTS = 30


def _seed(url: str) -> None:
    with session_scope(url) as s:
        documents.apply_text(s, CATALOGUE)
        for n in range(TENANTS):
            key = f"t{n:02d}"
            tenants.create(s, key)
            subscriptions.create(s, key, "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
            usage.record(
                s, key, "api_calls", Decimal(1000 + 100 * n), at=datetime(2026, 10, 9, tzinfo=UTC)
            )


def _state(url: str) -> tuple[list[tuple[str, str | None]], list[Any]]:
    inv, led = table_of(Invoice), table_of(LedgerEntry)
    with get_engine(url).connect() as c:
        invoices = [
            (r.status, r.number)
            for r in c.execute(sa.select(inv.c.status, inv.c.number).where(inv.c.kind == "period"))
        ]
        entries = list(
            c.execute(sa.select(led.c.invoice_id).where(led.c.type == "invoice")).scalars()
        )
    return invoices, entries


def _run(*extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mno", "billing", "run", "--period", "2026-10", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def _check_consistent(url: str) -> int:
    """Every invoice is a draft without a number, or issued with its ledger entry;
    returns how many are issued."""
    invoices, entries = _state(url)
    issued = [num for status, num in invoices if status != "draft"]
    assert all(num is not None for num in issued)
    assert all(num is None for status, num in invoices if status == "draft")
    assert len(entries) == len(issued) == len(set(entries))
    return len(issued)


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_while_issuing_then_rerun_issues_each_draft_once(store_url: str, seed: int) -> None:
    _seed(store_url)
    rng = random.Random(seed)
    stop_after = rng.randint(1, TENANTS // 2)  # a random point within the issuing
    proc = _run("--issue")
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "issuing did not start"
            invoices, _ = _state(store_url)
            if sum(status != "draft" for status, _ in invoices) >= stop_after:
                break
            time.sleep(0.01)
        time.sleep(rng.random() * 0.005)  # land anywhere within the next transactions
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    partly = _check_consistent(store_url)
    assert 0 < partly <= TENANTS

    rerun = _run("--issue", "-o", "json")
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, (out, err)
    assert _check_consistent(store_url) == TENANTS
    invoices, _ = _state(store_url)
    numbers = sorted(int(num.rsplit("-", 1)[1]) for _, num in invoices if num)
    assert numbers == list(range(1, TENANTS + 1))  # gapless, no duplicates
    assert '"issued": ' in out or '"issued":' in out


def test_invoice_issue_all_drafts_issues_the_leftovers(cli: Any, store_url: str) -> None:
    _seed(store_url)
    result = cli("billing", "run", "--period", "2026-10", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert cli("invoice", "issue", "--period", "2026-10").exit_code == 2  # needs --all-drafts
    assert cli("invoice", "issue").exit_code == 2
    data = cli.json("invoice", "issue", "--all-drafts", "--period", "2026-11")
    assert data == {"issued": 0, "ids": []}
    data = cli.json("invoice", "issue", "--all-drafts", "--period", "2026-10")
    assert data["issued"] == TENANTS
    assert _check_consistent(store_url) == TENANTS
    assert cli.json("invoice", "issue", "--all-drafts")["issued"] == 0
