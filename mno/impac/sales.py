"""Sales KPIs over ``opportunities``: pipeline by stage, weighted pipeline, win rate.

- **Pipeline** is every open opportunity (stage neither ``won`` nor ``lost``; a missing
  stage counts as ``prospecting``) as it stands now, per stage: how many and their
  ``amount``. It does not depend on the window.
- **Weighted pipeline** is the sum of ``amount × probability / 100`` over the open
  opportunities (a missing probability counts as 0), computed exactly.
- **Win rate** is ``won / (won + lost)`` over the opportunities closed in the window
  (``closed_date`` within it); null when none closed.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

from sqlmodel import Session

from mno.impac import sql
from mno.impac.currency import amount_text, rounded, totals
from mno.impac.model import Query, Result, Series

STAGES = ("prospecting", "qualification", "proposal", "negotiation")

_OPPORTUNITY = {
    "stage": "stage",
    "cur": "currency",
    "amt": "amount",
    "prob": "probability",
    "closed": "closed_date",
}


def pipeline(session: Session, tenant_id: uuid.UUID, q: Query) -> Result:
    d = sql.dialect(session)
    rows = sql.run(
        session,
        "SELECT COALESCE(stage, 'prospecting') AS st, cur, COUNT(*) AS n, "
        f"SUM({d.amount('amt')}) AS total, "
        f"SUM({d.amount('amt')} * COALESCE({d.integer('prob')}, 0)) AS weighted "
        f"FROM ({sql.records(d, _OPPORTUNITY)}) r "
        "WHERE COALESCE(stage, 'prospecting') NOT IN ('won', 'lost') GROUP BY st, cur",
        tenant_id,
        "opportunities",
    )
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.st] += int(row.n)
    amounts = q.view.apply({(row.st, row.cur): d.value(row.total) for row in rows})
    weighted = q.view.apply(
        sql.added((("all", row.cur), d.value(row.weighted, 100)) for row in rows)
    )
    stages = list(STAGES) + sorted(set(counts) - set(STAGES))
    series = [
        Series(
            "pipeline by stage",
            [(s, amount_text(values.get(s, Decimal(0)), cur)) for s in stages],
            currency=cur,
        )
        for cur, values in sorted(amounts.items())
    ]
    series.append(Series("opportunities by stage", [(s, counts.get(s, 0)) for s in stages]))
    return Result(
        series,
        {
            "pipeline": totals(amounts),
            "weighted_pipeline": totals(weighted),
            "open_opportunities": sum(counts.values()),
        },
        "stage",
    )


def win_rate(session: Session, tenant_id: uuid.UUID, q: Query) -> Result:
    d = sql.dialect(session)
    rows = sql.run(
        session,
        f"SELECT substr(closed, 1, 7) AS m, stage, cur, COUNT(*) AS n, "
        f"SUM({d.amount('amt')}) AS total FROM ({sql.records(d, _OPPORTUNITY)}) r "
        "WHERE stage IN ('won', 'lost') AND closed >= :start AND closed <= :end "
        "GROUP BY m, stage, cur",
        tenant_id,
        "opportunities",
        start=q.window.start.isoformat(),
        end=q.window.end.isoformat(),
    )
    won: dict[str, int] = defaultdict(int)
    lost: dict[str, int] = defaultdict(int)
    for row in rows:
        (won if row.stage == "won" else lost)[row.m] += int(row.n)
    won_amount = q.view.apply(
        sql.added((("all", row.cur), d.value(row.total)) for row in rows if row.stage == "won")
    )

    def rate(w: int, lo: int) -> str | None:
        return str(rounded(Decimal(w) / Decimal(w + lo), 4)) if w + lo else None

    months = q.window.months()
    series = [
        Series("win rate", [(m, rate(won[m], lost[m])) for m in months], unit="ratio"),
        Series("won", [(m, won[m]) for m in months], unit="opportunities"),
        Series("lost", [(m, lost[m]) for m in months], unit="opportunities"),
    ]
    w, lo = sum(won.values()), sum(lost.values())
    return Result(
        series,
        {"won": w, "lost": lo, "win_rate": rate(w, lo), "won_amount": totals(won_amount)},
        "month",
    )
