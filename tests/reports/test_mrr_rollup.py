"""The normalised-MRR rollup gives the figures the join over every line gives, on SQLite
and PostgreSQL: after the billing writes that change MRR (runs, issue, void with its
credit note, a partial credit, cancellation, a plan change, a tenant's timezone), and on
random invoices, lines, subscriptions and tenants written and rewritten row by row."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mno import clock
from mno.billing import credit_notes, invoices, subscriptions
from mno.reports import kpis, mrr, mrr_rollup
from mno.reports.model import Window
from mno.store import db
from mno.store.models.billing import Invoice, InvoiceLine, Plan, Subscription
from mno.store.models.reports import ReportMrrPeriod
from mno.store.models.tenancy import Tenant
from mno.store.types import UTCDateTime
from mno.tenancy import tenants
from tests.reports.test_mrr_normalised import _bill_and_issue, _mixed

Opener = Callable[..., AbstractContextManager[Any]]

WINDOWS = (
    Window.ending("2026-04", 4),
    Window.ending("2026-12", 12),
    Window.ending("2026-02", 1),
    Window.ending("2027-06", 24),
    Window.ending("2026-06", 6, "EUR"),
)


def stored(s: Any) -> dict[tuple[Any, ...], tuple[int, int]]:
    """The rollup's rows (keys whose sums fell to zero left out)."""
    return {
        (r.dated, r.currency, r.timezone, r.issued_on, r.period_start, r.period_end)
        + (r.start_at, r.end_at): (r.lines, r.amount_minor)
        for r in s.execute(sa.select(ReportMrrPeriod)).scalars()
        if r.lines or r.amount_minor
    }


def recomputed(s: Any) -> dict[tuple[Any, ...], tuple[int, int]]:
    """What ``rebuild`` would write, read without writing it."""
    at = UTCDateTime()
    select = sa.text(mrr_rollup.recompute_sql(s.get_bind().dialect.name)).columns(
        sa.column("dated"),
        sa.column("currency"),
        sa.column("timezone"),
        sa.column("issued_on"),
        sa.column("period_start", at),
        sa.column("period_end", at),
        sa.column("start_at", at),
        sa.column("end_at", at),
        sa.column("lines"),
        sa.column("amount_minor"),
    )
    return {tuple(r[:8]): (r[8], r[9]) for r in s.execute(select) if r[8] or r[9]}


def agree(session: Opener) -> dict[str, dict[str, int]]:
    """The rollup equals its recomputation, and the MRR read from it equals the join's
    over each window; returns the first window's."""
    with session(write=False) as s:
        assert stored(s) == recomputed(s)
        answers = [(mrr.normalised(s, w), mrr.normalised_from_lines(s, w)) for w in WINDOWS]
    for rolled, joined in answers:
        assert rolled == joined
    return answers[0][0]


def test_mrr_rollup_follows_the_billing_writes(store_url: str, session: Opener, cli: Any) -> None:
    _mixed(store_url, session)  # monthly, quarterly, annual (Kiritimati), January to March
    months = ("2026-01", "2026-02", "2026-03", "2026-04")
    assert agree(session) == {"EUR": dict.fromkeys(months, 24900)}
    with session() as s:
        by_key = {key: invoices.list_invoices(s, key) for key in ("mo", "qu", "an")}  # newest first
        an = by_key["an"][-1]
        assert an.status == "issued"
        # a partial credit on the annual invoice: 120.00 of 1200.00
        credit_notes.credit(s, str(an.id), reason="goodwill", amount=Decimal("120.00"))
    agree(session)
    with session() as s:
        credit_notes.void(s, str(by_key["qu"][0].id), reason="billed twice")  # Q2
    agree(session)
    clock.set_now(datetime(2026, 4, 10, tzinfo=UTC))
    with session() as s:
        subs = {sub.tenant_id: sub for sub in s.execute(sa.select(Subscription)).scalars()}
        t_mo = tenants.get(s, "mo")
        t_an = tenants.get(s, "an")
        # the annual plan ends mid-April: its prepaid months after count no more
        subscriptions.cancel(s, str(subs[t_an.id].id), at=datetime(2026, 4, 16, tzinfo=UTC))
    agree(session)
    with session() as s:
        tenants.update(s, "an", timezone="America/New_York")  # its months move
        subscriptions.change_plan(s, str(subs[t_mo.id].id), "quarterly")
    agree(session)
    _bill_and_issue(store_url, "2026-04", datetime(2026, 5, 1, 2, tzinfo=UTC), session)
    agree(session)
    # the summary reads the rollup; `mno report rebuild-mrr` recomputes it
    with session(write=False) as s:
        before = next(r for r in kpis.summary(s, WINDOWS[1]) if r.area == "revenue").metrics
    with session() as s:
        s.execute(sa.delete(ReportMrrPeriod))
    with session(write=False) as s:
        assert mrr.normalised(s, WINDOWS[1]) == {}
    assert cli.json("report", "rebuild-mrr") == {"report_mrr_period": len(recomputed_of(session))}
    with session(write=False) as s:
        after = next(r for r in kpis.summary(s, WINDOWS[1]) if r.area == "revenue").metrics
    assert after == before
    agree(session)


def recomputed_of(session: Opener) -> dict[tuple[Any, ...], tuple[int, int]]:
    with session(write=False) as s:
        return recomputed(s)


# -- random writes -------------------------------------------------------------------------

BASE = datetime(2025, 6, 1, tzinfo=UTC)
ZONES = ("UTC", "Pacific/Kiritimati", "America/New_York")
_ready: dict[str, dict[str, list[Any]]] = {}
_numbers = itertools.count()


def _day(n: int, hour: int = 0) -> datetime:
    return BASE + timedelta(days=n, hours=hour)


def _setup(url: str) -> dict[str, list[Any]]:
    """Three tenants, each with two subscriptions on one plan (made once per store)."""
    if url in _ready:
        return _ready[url]
    with db.session_scope(url) as s:
        plan = Plan(code="p", currency="EUR")
        s.add(plan)
        s.flush()
        made: dict[str, list[Any]] = {"tenants": [], "subs": []}
        for n in range(3):
            t, _ = tenants.create(s, f"r{n}", timezone=ZONES[n])
            made["tenants"].append(t.id)
            for k in range(2):
                sub = Subscription(
                    tenant_id=t.id, plan_id=plan.id, plan_code="p", started_at=_day(30 * k)
                )
                s.add(sub)
                s.flush()
                made["subs"].append(sub.id)
    _ready[url] = made
    return made


periods = st.one_of(
    st.none(),
    st.tuples(st.integers(0, 600), st.sampled_from([1, 7, 30, 31, 92, 365, 366])),
)
line_st = st.tuples(
    st.sampled_from(["fixed", "bundle", "usage", "credit"]),
    st.integers(-3000, 120_000),
    periods,
    st.one_of(st.none(), st.integers(0, 5)),
)
invoice_st = st.tuples(
    st.just("invoice"),
    st.integers(0, 2),
    st.sampled_from(["draft", "issued", "paid", "void"]),
    st.sampled_from(["period", "credit_note"]),
    st.sampled_from(["EUR", "USD"]),
    st.one_of(st.none(), st.integers(0, 700)),
    st.integers(0, 23),
    st.lists(line_st, min_size=0, max_size=3),
)
change_st = st.one_of(
    st.tuples(
        st.just("status"), st.integers(0, 20), st.sampled_from(["draft", "issued", "paid", "void"])
    ),
    st.tuples(st.just("issued"), st.integers(0, 20), st.one_of(st.none(), st.integers(0, 700))),
    st.tuples(st.just("currency"), st.integers(0, 20), st.sampled_from(["EUR", "USD"])),
    st.tuples(st.just("kind"), st.integers(0, 20), st.sampled_from(["period", "credit_note"])),
    st.tuples(st.just("tenant"), st.integers(0, 20), st.integers(0, 2)),
    st.tuples(st.just("amount"), st.integers(0, 40), st.integers(-3000, 120_000)),
    st.tuples(st.just("period"), st.integers(0, 40), periods),
    st.tuples(st.just("line_sub"), st.integers(0, 40), st.one_of(st.none(), st.integers(0, 5))),
    st.tuples(st.just("drop_line"), st.integers(0, 40), st.none()),
    st.tuples(st.just("drop_invoice"), st.integers(0, 20), st.none()),
    st.tuples(
        st.just("sub"),
        st.integers(0, 5),
        st.tuples(
            st.integers(0, 300),
            st.one_of(st.none(), st.integers(0, 400)),
            st.one_of(st.none(), st.integers(0, 700)),
        ),
    ),
    st.tuples(st.just("zone"), st.integers(0, 2), st.sampled_from(ZONES)),
)


def _write(s: Any, made: dict[str, list[Any]], op: tuple[Any, ...]) -> None:
    inv_t = Invoice.__table__  # type: ignore[attr-defined]
    ln_t = InvoiceLine.__table__  # type: ignore[attr-defined]
    invs = [r[0] for r in s.execute(sa.select(inv_t.c.id).order_by(inv_t.c.number))]
    lines = [r[0] for r in s.execute(sa.select(ln_t.c.id).order_by(ln_t.c.line_key))]
    what = op[0]
    if what == "invoice":
        _, t, status, kind, currency, issued, hour, its_lines = op
        n = next(_numbers)
        inv = Invoice(
            tenant_id=made["tenants"][t],
            period=f"9{n:06d}",  # unique: one invoice per tenant, period, currency and kind
            kind=kind,
            number=f"R-{n:04d}-{hour}",
            status=status,
            currency=currency,
            issued_at=None if issued is None else _day(issued, hour),
        )
        s.add(inv)
        s.flush()
        for k, (lk, amount, period, sub) in enumerate(its_lines):
            start = None if period is None else _day(period[0])
            s.add(
                InvoiceLine(
                    invoice_id=inv.id,
                    line_key=f"{inv.number}|{k}",
                    kind=lk,
                    amount_minor=amount,
                    period_start=start,
                    period_end=None if period is None else _day(period[0] + period[1]),
                    subscription_id=None if sub is None else made["subs"][sub],
                )
            )
        s.flush()
        return
    _, i, value = op
    if what in ("status", "issued", "currency", "kind", "tenant", "drop_invoice"):
        if not invs:
            return
        target = invs[i % len(invs)]
        if what == "drop_invoice":
            s.execute(sa.delete(ln_t).where(ln_t.c.invoice_id == target))
            s.execute(sa.delete(inv_t).where(inv_t.c.id == target))
            return
        if what == "issued":
            column, new = "issued_at", None if value is None else _day(value, 5)
        elif what == "tenant":
            column, new = "tenant_id", made["tenants"][value]
        else:
            column, new = what, value
        s.execute(sa.update(inv_t).where(inv_t.c.id == target).values({column: new}))
    elif what in ("amount", "period", "line_sub", "drop_line"):
        if not lines:
            return
        target = lines[i % len(lines)]
        if what == "drop_line":
            s.execute(sa.delete(ln_t).where(ln_t.c.id == target))
            return
        values: dict[str, Any]
        if what == "amount":
            values = {"amount_minor": value}
        elif what == "period":
            values = {
                "period_start": None if value is None else _day(value[0]),
                "period_end": None if value is None else _day(value[0] + value[1]),
            }
        else:
            values = {"subscription_id": None if value is None else made["subs"][value]}
        s.execute(sa.update(ln_t).where(ln_t.c.id == target).values(values))
    elif what == "sub":
        started, trial, cancel = value
        s.execute(
            sa.update(Subscription.__table__)  # type: ignore[attr-defined]
            .where(Subscription.__table__.c.id == made["subs"][i])  # type: ignore[attr-defined]
            .values(
                started_at=_day(started),
                trial_ends_at=None if trial is None else _day(trial),
                cancel_at=None if cancel is None else _day(cancel, 12),
            )
        )
    else:  # zone
        s.execute(
            sa.update(Tenant.__table__)  # type: ignore[attr-defined]
            .where(Tenant.__table__.c.id == made["tenants"][i])  # type: ignore[attr-defined]
            .values(timezone=value)
        )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(invoice_st, min_size=1, max_size=6).flatmap(
        lambda made: st.lists(change_st, max_size=8).map(lambda changes: made + changes)
    ),
)
def test_mrr_rollup_equals_the_join_on_random_writes(
    store_url: str, ops: list[tuple[Any, ...]]
) -> None:
    made = _setup(store_url)
    with db.session_scope(store_url) as s:  # each example starts from no invoices
        s.execute(sa.delete(InvoiceLine.__table__))  # type: ignore[attr-defined]
        s.execute(sa.delete(Invoice.__table__))  # type: ignore[attr-defined]
        assert stored(s) == {}
    for op in ops:
        with db.session_scope(store_url) as s:  # one write, one transaction
            _write(s, made, op)

    def opener(write: bool = True) -> AbstractContextManager[Any]:
        return db.session_scope(store_url, write=write)

    agree(opener)
