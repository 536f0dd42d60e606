"""Issuing drafts in bulk: ``mno billing run --issue`` and ``mno invoice issue --all-drafts``.

Each draft is issued in its own transaction (``invoices.issue``: the next gapless
number, its ledger entry, ``invoice.issued``), so a crash at any point leaves every
draft either issued once or still a draft. Issuing is therefore resumable: running the
same command again issues what is left. ``billing run --period P --issue`` issues every
draft a billing run wrote for ``P``, not only the drafts of the run it just made, so a
rerun after a crash also issues the drafts the crashed run left behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa

from mno.billing import invoices
from mno.billing.periods import parse_period
from mno.errors import InvalidTransition
from mno.store.db import session_scope
from mno.store.models.billing import Invoice
from mno.store.types import table_of


def draft_ids(
    *,
    run_id: str | uuid.UUID | None = None,
    period: str | None = None,
    from_runs_only: bool = False,
    url: str | None = None,
) -> list[uuid.UUID]:
    """The ids of the drafts of a run, of a period (``YYYY-MM``), or all drafts, oldest
    first; ``from_runs_only`` keeps the drafts that billing runs wrote."""
    t = table_of(Invoice).c
    stmt = sa.select(t.id).where(t.status == "draft")
    if run_id is not None:
        stmt = stmt.where(
            t.run_id == (run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(run_id))
        )
    if period is not None:
        parse_period(period)
        stmt = stmt.where(t.period == period)
    if from_runs_only:
        stmt = stmt.where(t.run_id.is_not(None))
    with session_scope(url, write=False) as s:
        return list(s.execute(stmt.order_by(t.created_at, t.id)).scalars())


def issue_drafts(
    run_id: str | uuid.UUID | None = None,
    *,
    period: str | None = None,
    from_runs_only: bool = False,
    url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[uuid.UUID]:
    """Issue the drafts ``draft_ids`` selects, one transaction each; returns the ids
    issued. A draft issued meanwhile by another process is skipped."""
    ids = draft_ids(run_id=run_id, period=period, from_runs_only=from_runs_only, url=url)
    issued: list[uuid.UUID] = []
    for n, invoice_id in enumerate(ids, 1):
        try:
            with session_scope(url) as s:
                invoices.issue(s, str(invoice_id))
        except InvalidTransition:
            continue  # issued (or voided) since it was listed
        issued.append(invoice_id)
        if progress:
            progress(n, len(ids))
    return issued
