"""Billing runs as separate processes on PostgreSQL: two at once (one wins, nothing is
duplicated) and a run killed with SIGKILL mid-way, then run again (exactly the invoices of a
clean run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mno.billing import documents, subscriptions, usage
from mno.billing import run as billing
from mno.store.db import get_engine, session_scope
from mno.store.models.billing import BillingRun, Invoice, InvoiceLine
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants
from tests.billing.conftest import CATALOGUE

TENANTS = 24
CHUNK = 5  # five chunks of tenants
# A run that stops after its first committed chunk until told to go on (a line on stdin):
# the point where the tests start a rival run or kill it.
PAUSING_RUN = """
import sys
from mno.billing import run as billing
billing.CHUNK = int(sys.argv[2])
def progress(done, total):
    if done < total:
        print(f"chunk {done}/{total}", flush=True)
        sys.stdin.readline()
        sys.stdin = open(__import__("os").devnull)
billing.run("2026-10", url=sys.argv[1], on_progress=progress)
print("finished", flush=True)
"""


@pytest.fixture
def billed_store(pg_url: str) -> tuple[str, list[tuple[Any, ...]]]:
    """PostgreSQL with TENANTS subscribed tenants and usage; returns the URL and what a
    clean run invoices (from a dry run: it writes nothing)."""
    with session_scope(pg_url) as s:
        documents.apply_text(s, CATALOGUE)
        for n in range(TENANTS):
            key = f"t{n:02d}"
            tenants.create(
                s, key, country="FR" if n % 2 else None, timezone=("UTC", "Asia/Tokyo")[n % 2]
            )
            subscriptions.create(s, key, "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
            usage.record(
                s, key, "api_calls", Decimal(900 + 500 * n), at=datetime(2026, 10, 9, tzinfo=UTC)
            )
    dry = billing.run("2026-10", url=pg_url, dry_run=True)
    expected = sorted(
        (p["tenant"], p["currency"], p["subtotal_minor"], p["tax_minor"], p["total_minor"])
        for p in dry.preview
    )
    assert len(expected) == TENANTS and dry.lines == 2 * TENANTS
    return pg_url, expected


def _invoiced(url: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    inv, ten, line = Invoice.__table__, Tenant.__table__, InvoiceLine.__table__  # type: ignore[attr-defined]
    with get_engine(url).connect() as c:
        rows = c.execute(
            sa.select(
                ten.c.key, inv.c.currency, inv.c.subtotal_minor, inv.c.tax_minor, inv.c.total_minor
            ).join(ten, ten.c.id == inv.c.tenant_id)
        ).all()
        keys = list(c.execute(sa.select(line.c.line_key)).scalars())
    return sorted(map(tuple, rows)), keys


def _mno(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mno", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def _pausing(url: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSING_RUN, url, str(CHUNK)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("chunk 5/24"), proc.stderr.read()  # type: ignore[union-attr]
    return proc


def test_a_second_run_is_refused_while_the_first_runs(
    billed_store: tuple[str, list[tuple[Any, ...]]],
) -> None:
    url, expected = billed_store
    first = _pausing(url)
    rival = _mno("billing", "run", "--period", "2026-10", "-o", "json")
    out, err = rival.communicate(timeout=120)
    assert rival.returncode == 1, (out, err)
    assert "already running" in err
    assert first.stdin is not None
    first.stdin.write("\n")
    first.stdin.close()
    first.wait(timeout=120)
    assert first.returncode == 0, first.stderr.read()  # type: ignore[union-attr]
    got, keys = _invoiced(url)
    assert got == expected
    assert len(keys) == len(set(keys)) == 2 * TENANTS


def test_two_runs_started_together_bill_once(
    billed_store: tuple[str, list[tuple[Any, ...]]],
) -> None:
    url, expected = billed_store
    procs = [_mno("billing", "run", "--period", "2026-10", "-o", "json") for _ in range(2)]
    outcomes = [(p.wait(timeout=180), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in outcomes)
    # one wins; the other is refused, or (if the winner had already finished) finds
    # nothing left to bill
    assert codes in ([0, 0], [0, 1]), outcomes
    assert all("already running" in err for code, err in outcomes if code == 1)
    got, keys = _invoiced(url)
    assert got == expected
    assert len(keys) == len(set(keys)) == 2 * TENANTS


def test_lock_of_a_killed_but_unreaped_run_is_taken_over(
    billed_store: tuple[str, list[tuple[Any, ...]]],
) -> None:
    """A run killed while its parent has not reaped it yet (a zombie: its pid still
    answers signals) holds no lock: the rerun takes it over at once."""
    url, expected = billed_store
    victim = _pausing(url)
    victim.send_signal(signal.SIGKILL)
    stat = Path(f"/proc/{victim.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed run did not become a zombie"
        time.sleep(0.05)
    try:
        rerun = _mno("billing", "run", "--period", "2026-10", "-o", "json")
        out, err = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, (out, err)
    finally:
        victim.wait(timeout=60)
    got, keys = _invoiced(url)
    assert got == expected
    assert len(keys) == len(set(keys)) == 2 * TENANTS


def test_killed_mid_run_then_rerun_gives_a_clean_runs_invoices(
    billed_store: tuple[str, list[tuple[Any, ...]]],
) -> None:
    url, expected = billed_store
    victim = _pausing(url)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    partial, _ = _invoiced(url)
    assert len(partial) == CHUNK  # the first chunk committed, nothing after it
    # the lock of the dead process is taken over at once (same host, process gone)
    rerun = _mno("billing", "run", "--period", "2026-10", "-o", "json")
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, (out, err)
    got, keys = _invoiced(url)
    assert got == expected
    assert len(keys) == len(set(keys)) == 2 * TENANTS
    with session_scope(url, write=False) as s:
        statuses = sorted(s.execute(sa.select(BillingRun.status)).scalars())
    assert statuses == ["done", "interrupted"]
