"""Issuing the drafts a billing run wrote: ``mno billing run --issue``.

Each draft is issued in its own transaction (``invoices.issue``: the next gapless
number, its ledger entry, ``invoice.issued``), so a failure leaves the drafts before it
issued and the rest as drafts; calling again with the same run issues what is left.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from mno.billing import invoices
from mno.store.db import session_scope
from mno.store.models.billing import Invoice
from mno.store.types import table_of


def drafts_of_run(run_id: str | uuid.UUID, url: str | None = None) -> list[uuid.UUID]:
    """The ids of the run's invoices that are still drafts."""
    rid = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(run_id)
    t = table_of(Invoice).c
    with session_scope(url, write=False) as s:
        return list(
            s.execute(sa.select(t.id).where(t.run_id == rid, t.status == "draft")).scalars()
        )


def issue_drafts(run_id: str | uuid.UUID, *, url: str | None = None) -> list[uuid.UUID]:
    """Issue every draft of billing run ``run_id``, one transaction each, in the order the
    store lists them; returns the ids of the invoices issued."""
    issued: list[uuid.UUID] = []
    for invoice_id in drafts_of_run(run_id, url):
        with session_scope(url) as s:
            invoices.issue(s, str(invoice_id))
        issued.append(invoice_id)
    return issued
