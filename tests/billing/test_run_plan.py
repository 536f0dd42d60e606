"""The query that picks the tenants to bill stays a join on PostgreSQL: an OR of two
``IN (subquery)`` tests became a subquery rescanned for every tenant once the ids
outgrew ``work_mem``, and a run of a million tenants never got past it."""

from __future__ import annotations

import sqlalchemy as sa

from mno.billing import run as billing
from mno.store.db import session_scope


def test_tenants_to_bill_are_selected_without_a_subplan(pg_url: str) -> None:
    with session_scope(pg_url, write=False) as s:
        query = billing._candidates(s, 2026, 10, None, None, [])
        compiled = query.compile(
            dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True}
        )
        plan = "\n".join(row[0] for row in s.execute(sa.text(f"EXPLAIN {compiled}")))
    assert "tenant" in plan
    assert "SubPlan" not in plan, plan
