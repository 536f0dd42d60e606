"""Billing runs: rate every tenant's subscriptions, usage and one-off charges for a period.

``--period YYYY-MM`` names a calendar month. In each tenant's timezone the run bills:

- the arrears of every subscription period that closes within the month (fixed charges in
  arrears, usage, time and buckets): its end, or its cancellation, falls in the month;
- the in-advance charges of every period that starts in the following month;
- on the run whose month covers a subscription's start, the in-advance charges of its
  periods that started before the month closed (the first period, prorated from the start).

A monthly plan thus gets October's arrears and usage and November's in-advance charges from
the ``2026-10`` run; a weekly plan gets the weeks that ended in October and the weeks that
start in November.

Only closed periods are billed: a tenant whose month has not closed yet in its timezone is
skipped and listed with the moment it closes (``RunResult.not_closed``); a run that can bill
no tenant for that reason is refused (``RunResult.refused``) and writes nothing. Without a
period, ``default_period()`` names the last month closed in every timezone (the biller's
period too).

Idempotent by construction:
- a named run lock per period refuses a concurrent run; a lock left by a process that died
  on this host (gone, or an unreaped zombie) is taken over (``leases.take_lock``), one left
  by another host expires after ``LOCK_TTL``;
- tenants that already hold an invoice for the period are skipped (a rerun creates nothing);
- each chunk of tenants is one transaction, so a crash leaves whole chunks and a rerun
  completes the rest;
- ``billing_invoice_line.line_key`` is unique on (subscription, charge, period start, period
  end): a line already billed (by ``subscription create --invoice-now`` or by the run of the
  month before) is skipped, and invoices are unique on (tenant, period, currency, kind).

Rating a tenant is pure (``mno.billing.tenant_rating``). Usage is aggregated in SQL (GROUP BY
tenant, metric within each window of time); invoices and lines are written in bulk
(``mno.billing.invoice_rows``: COPY on PostgreSQL).
"""

from __future__ import annotations

import gc
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from mno import clock, platform
from mno.billing import bundle_rating, invoice_rows, late_usage
from mno.billing.invoice_rows import existing_lines, id_in, invoice_row
from mno.billing.periods import (
    closes_at,
    last_closed_period,
    month_bounds,
    parse_period,
    utc_z,
)
from mno.billing.subscriptions import end_trials
from mno.billing.tenant_rating import (  # noqa: F401 - Slot re-exported
    USAGE_KINDS,
    Catalog,
    Slot,
    UsageMap,
    billing_start,
    fee_key,
    has_setup_fee,
    line_key,
    load_catalog,
    rate_tenant,
    setup_key,
    slots,
)
from mno.errors import Conflict, NotFound
from mno.store import leases, outbox
from mno.store.bulk import hex_ids
from mno.store.db import session_scope
from mno.store.models.billing import (
    BillingRun,
    Charge,
    Subscription,
    TaxTreatment,
    UsageEvent,
)
from mno.store.models.tenancy import Tenant
from mno.store.types import new_id, table_of

CHUNK = 10_000  # tenants per transaction (see _bill_chunk)
LOCK_TTL = timedelta(minutes=10)
T_INV = invoice_rows.T_INV
T_SUB = table_of(Subscription)
T_USE = table_of(UsageEvent)
T_CHG = table_of(Charge)
T_TEN = table_of(Tenant)
T_TAXT = table_of(TaxTreatment)


@dataclass
class RunResult:
    run_id: str | None
    period: str
    tenants: int = 0
    invoices: int = 0
    lines: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    preview: list[dict[str, Any]] = field(default_factory=list)
    issued: int | None = None  # drafts issued afterwards (``--issue``), None when not asked
    # tenants skipped because the period has not closed in their timezone yet
    not_closed: list[dict[str, str]] = field(default_factory=list)
    refused: bool = False  # every tenant to bill was skipped: nothing was written
    late_events: int = 0  # late usage events billed (``mno.billing.late_usage``)

    def merge(self, other: RunResult) -> None:
        self.tenants += other.tenants
        self.invoices += other.invoices
        self.lines += other.lines
        self.late_events += other.late_events
        for cur, v in other.totals.items():
            self.totals[cur] = self.totals.get(cur, 0) + v
        self.failed.extend(other.failed)
        self.preview.extend(other.preview)

    def as_dict(self) -> dict[str, Any]:
        issued = {} if self.issued is None else {"issued": self.issued}
        return {
            "run": self.run_id,
            "period": self.period,
            "tenants": self.tenants,
            "invoices": self.invoices,
            "lines": self.lines,
            "late_events": self.late_events,
            "totals": self.totals,
            "errors": self.failed,
            "duration_s": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "not_closed": self.not_closed,
        } | issued


def _renew(s: Session, lock: str, owner: str) -> None:
    """Renew the run lock in the chunk's transaction; a run that lost it stops there."""
    if not leases.take_lock(s, lock, owner, LOCK_TTL):
        raise Conflict("the billing run lost its lock to another run", "run it again")


def default_period() -> str:
    """The period a run bills when none is given: the last month that has closed in every
    timezone, after the platform's grace (``billing.run_after_hours``), as the biller does."""
    return last_closed_period(clock.now(), platform.load().billing.run_after_hours)


# The first timezone (UTC+14, e.g. Pacific/Kiritimati) closes a month 14 hours before UTC.
EARLIEST_TZ = "Etc/GMT-14"


def run(
    period: str,
    *,
    url: str | None = None,
    tenant_key: str | None = None,
    dry_run: bool = False,
    tenant_keys: list[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    crash_after_chunks: int | None = None,
) -> RunResult:
    """Bill ``period`` (YYYY-MM) for every tenant, or one, or a given list (retry).

    Tenants whose period has not closed yet in their timezone are skipped and listed in
    ``not_closed``; when no tenant remains, the result is ``refused`` and nothing is
    written. A period that has not closed in any timezone and has no tenant to bill is
    refused with ``Conflict``."""
    year, month = parse_period(period)
    started = time.perf_counter()
    owner = leases.make_owner()
    lock = f"billing-run:{period}"
    result = RunResult(None, period, dry_run=dry_run)
    now = clock.now()
    with session_scope(url, write=False) as s:
        open_tz = _open_timezones(s, year, month, now)
        if open_tz:
            result.not_closed = _not_closed(s, year, month, open_tz, tenant_key, tenant_keys)
            closed_left = _candidates(s, year, month, tenant_key, tenant_keys, open_tz).exists()
            if result.not_closed and not s.execute(sa.select(closed_left)).scalar():
                result.refused = True
                result.seconds = time.perf_counter() - started
                return result
    if not result.not_closed and now < closes_at(year, month, EARLIEST_TZ):
        first = utc_z(closes_at(year, month, EARLIEST_TZ))
        raise Conflict(
            f"period {period} has not closed in any timezone yet (the first closes at {first})",
            "bill a closed month, or leave --period out to bill the last closed one",
        )
    if not dry_run:
        result.run_id = _start(url, period, tenant_key, lock, owner)
    try:
        with _gc_paused(), session_scope(url, write=False) as s:
            cat = load_catalog(s)
            ids = _tenants_to_bill(s, year, month, tenant_key, tenant_keys, open_tz)
        total = len(ids)
        for n, i in enumerate(range(0, total, CHUNK)):
            chunk = ids[i : i + CHUNK]
            with _gc_paused():
                if dry_run:
                    with session_scope(url, write=False) as s:
                        part = _chunk(s, chunk, year, month, period, cat, None, write=False)
                else:
                    part = _bill_chunk(
                        url, chunk, year, month, period, cat, result.run_id, lock, owner
                    )
            result.merge(part)
            if on_progress:
                on_progress(min(i + CHUNK, total), total)
            if crash_after_chunks is not None and n + 1 >= crash_after_chunks:
                raise RuntimeError("simulated crash")
        result.seconds = time.perf_counter() - started
        if not dry_run:
            _finish(url, result)
    finally:
        if not dry_run:
            with session_scope(url) as s:
                leases.release_lock(s, lock, owner)
    return result


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a chunk runs (or the ids to bill are read), then
    one of the young generations.

    A chunk makes hundreds of thousands of short-lived containers (rows, line dicts,
    tuples) that reference counting frees; with the collector on, their allocations set
    off collections that walk every live object over and over (a quarter of a run's CPU
    time). Whatever cycles a chunk leaves are young, and collected when it ends, so
    memory stays bounded by a chunk. The switch is process-wide: in a server, other
    threads' cycles wait for the chunk's end too."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(1)


def _start(url: str | None, period: str, tenant_key: str | None, lock: str, owner: str) -> str:
    """Take the period's run lock, close a run of it that died, end the trials that are
    over and record the new run; its id."""
    with session_scope(url) as s:
        if not leases.take_lock(s, lock, owner, LOCK_TTL):
            raise Conflict(
                f"a billing run for {period} is already running", "wait for it to finish"
            )
        # we hold the lock: a run of this period still marked running has died
        s.execute(
            sa.update(table_of(BillingRun))
            .where(col(BillingRun.period) == period, col(BillingRun.status) == "running")
            .values(status="interrupted", finished_at=clock.now())
        )
        end_trials(s, clock.now())
        br = BillingRun(period=period, tenant_key=tenant_key)
        s.add(br)
        s.flush()
        return str(br.id)


_TZ = sa.func.coalesce(T_TEN.c.timezone, "")


def _open_timezones(s: Session, year: int, month: int, now: datetime) -> list[str]:
    """The tenants' timezones (as stored) in which the month has not closed at ``now``."""
    return [
        tz
        for tz in s.execute(sa.select(_TZ).distinct()).scalars()
        if closes_at(year, month, tz or "UTC") > now
    ]


def _candidates(
    s: Session,
    year: int,
    month: int,
    tenant_key: str | None,
    tenant_keys: list[str] | None,
    open_tz: list[str],
    *,
    cols: Sequence[Any] = (T_TEN.c.id,),
) -> Any:
    """Tenants with a billable subscription, a submitted charge or late usage to bill
    whose month has closed (the timezones in ``open_tz`` left out)."""
    # one IN over a UNION, not INs joined by OR: PostgreSQL plans the UNION as a join,
    # where an OR of INs rescans a subquery for every tenant once its ids outgrow
    # work_mem (hours at a million tenants)
    late = late_usage.open_late(f"{year:04d}-{month:02d}")
    billable = sa.union(
        sa.select(T_SUB.c.tenant_id).where(_billable_subs(year, month)),
        sa.select(T_CHG.c.tenant_id).where(T_CHG.c.status == "submitted"),
        sa.select(T_USE.c.tenant_id).where(late),
    )
    q = sa.select(*cols).where(T_TEN.c.id.in_(billable))
    if open_tz:
        q = q.where(_TZ.not_in(open_tz))
    if tenant_key:
        q = q.where(T_TEN.c.key == tenant_key)
    if tenant_keys:
        q = q.where(T_TEN.c.key.in_(tenant_keys))
    return q


def _tenants_to_bill(
    s: Session,
    year: int,
    month: int,
    tenant_key: str | None,
    tenant_keys: list[str] | None,
    open_tz: list[str],
) -> list[uuid.UUID]:
    """Tenants with a billable subscription or a submitted charge whose month has closed,
    in id order."""
    q = _candidates(s, year, month, tenant_key, tenant_keys, open_tz).order_by(T_TEN.c.id)
    return list(s.execute(q).scalars())


def _not_closed(
    s: Session,
    year: int,
    month: int,
    open_tz: list[str],
    tenant_key: str | None,
    tenant_keys: list[str] | None,
) -> list[dict[str, str]]:
    """The tenants a run would bill but whose month is still open in their timezone, each
    with the UTC moment it closes, in key order."""
    q = (
        _candidates(s, year, month, tenant_key, tenant_keys, [], cols=(T_TEN.c.key, _TZ))
        .where(_TZ.in_(open_tz))
        .order_by(T_TEN.c.key)
    )
    return [
        {"tenant": key, "closes_at": utc_z(closes_at(year, month, tz or "UTC"))}
        for key, tz in s.execute(q)
    ]


def _bill_chunk(
    url: str | None,
    chunk: list[uuid.UUID],
    year: int,
    month: int,
    period: str,
    cat: Catalog,
    run_id: str | None,
    lock: str,
    owner: str,
) -> RunResult:
    """Bill one chunk of tenants in one transaction that also renews the run lock."""
    try:
        with session_scope(url) as s:
            part = _chunk(s, chunk, year, month, period, cat, run_id, True)
            _renew(s, lock, owner)
    except IntegrityError:
        # a line billed elsewhere that the cheap check did not look for
        with session_scope(url) as s:
            part = _chunk(s, chunk, year, month, period, cat, run_id, True, True)
            _renew(s, lock, owner)
    return part


def _finish(url: str | None, result: RunResult) -> None:
    """Record the run's outcome and announce it (``billing.run_finished``)."""
    assert result.run_id is not None
    with session_scope(url) as s:
        br = s.get(BillingRun, uuid.UUID(result.run_id))
        assert br is not None
        br.status = "failed" if result.failed else "done"
        br.tenants, br.invoices = result.tenants, result.invoices
        br.failed, br.totals = result.failed, result.totals
        br.finished_at = clock.now()
        s.add(br)
        outbox.emit(s, "billing.run_finished", result.as_dict())


def _billable_subs(year: int, month: int) -> Any:
    """Live subscriptions, and those that ended no earlier than the period's earliest start."""
    earliest = month_bounds(year, month, "UTC")[0] - timedelta(days=1)
    return sa.or_(
        T_SUB.c.status.in_(["active", "trialing"]),
        sa.and_(T_SUB.c.status == "canceled", T_SUB.c.ended_at > earliest),
    )


def retry_failed(run_id: str, url: str | None = None) -> RunResult:
    with session_scope(url, write=False) as s:
        br = s.get(BillingRun, uuid.UUID(run_id))
        if br is None:
            raise NotFound(f"billing run {run_id} not found")
        keys = [f["tenant"] for f in br.failed]
        period = br.period
    if not keys:
        return RunResult(run_id, period)
    return run(period, url=url, tenant_keys=keys)


_ONE = Decimal(1)


def _num(value: Any) -> Decimal:
    """A quantity read from SQL, without the column's trailing zeros."""
    if isinstance(value, int):  # SQLite's sum of whole quantities
        return Decimal(value)
    d = value if isinstance(value, Decimal) else Decimal(str(value or 0))
    return d.quantize(_ONE) if d == d.to_integral_value() else d.normalize()


def aggregate_usage(
    s: Session,
    windows: dict[tuple[datetime, datetime], list[Any]],
    unique: dict[str, str | None],
    latest: set[str],
    entries: set[str] | None = None,
    needed: set[str] | None = None,
) -> UsageMap:
    """Per (tenant, metric, window start, window end): sum, and count and max when some
    charge aggregates that way (``needed``; None: both), plus unique_count and latest for
    the metrics that need them; all computed in SQL. For the metrics in ``entries`` (time
    charges), each entry's quantity as well, in time order."""
    usage: UsageMap = {}
    extra: list[tuple[str, Any, Callable[[Any], Decimal]]] = []  # (aggregation, SQL, convert)
    if needed is None or "count" in needed:
        extra.append(("count", sa.func.count(), Decimal))
    if needed is None or "max" in needed:
        extra.append(("max", sa.func.max(T_USE.c.quantity), _num))

    def slot(tid: Any, metric: str, ws: datetime, we: datetime) -> dict[str, Any]:
        return usage.setdefault((tid, metric, ws, we), {})

    for (ws, we), tids in windows.items():
        where = [id_in(s, T_USE.c.tenant_id, tids), T_USE.c.at >= ws, T_USE.c.at < we]
        # late events are billed on their own line, on a later invoice (late_usage)
        where.append(T_USE.c.late_period.is_(None))
        q = (
            sa.select(
                T_USE.c.tenant_id,
                T_USE.c.metric_code,
                sa.func.sum(T_USE.c.quantity),
                *(sql for _, sql, _ in extra),
            )
            .where(*where)
            .group_by(T_USE.c.tenant_id, T_USE.c.metric_code)
        )
        for tid, metric, total, *more in s.execute(q):
            agg = usage[(tid, metric, ws, we)] = {"sum": _num(total)}
            for (name, _, convert), value in zip(extra, more, strict=True):
                agg[name] = convert(value)
        for metric, prop in unique.items():
            value = (
                T_USE.c.properties[prop].as_string()
                if prop
                else sa.func.coalesce(T_USE.c.idempotency_key, sa.cast(T_USE.c.id, sa.String))
            )
            q = (
                sa.select(T_USE.c.tenant_id, sa.func.count(sa.distinct(value)))
                .where(*where, T_USE.c.metric_code == metric)
                .group_by(T_USE.c.tenant_id)
            )
            for tid, cnt in s.execute(q):
                slot(tid, metric, ws, we)["unique_count"] = Decimal(cnt)
        if entries:
            q = (
                sa.select(T_USE.c.tenant_id, T_USE.c.metric_code, T_USE.c.quantity)
                .where(*where, T_USE.c.metric_code.in_(sorted(entries)))
                .order_by(T_USE.c.tenant_id, T_USE.c.metric_code, T_USE.c.at, T_USE.c.id)
            )
            for tid, metric, qty in s.execute(q):
                slot(tid, metric, ws, we).setdefault("entries", []).append(_num(qty))
        if latest:
            ranked = (
                sa.select(
                    T_USE.c.tenant_id,
                    T_USE.c.metric_code,
                    T_USE.c.quantity,
                    sa.func.row_number()
                    .over(
                        partition_by=(T_USE.c.tenant_id, T_USE.c.metric_code),
                        order_by=(T_USE.c.at.desc(), T_USE.c.created_at.desc(), T_USE.c.id.desc()),
                    )
                    .label("rn"),
                )
                .where(*where, T_USE.c.metric_code.in_(sorted(latest)))
                .subquery()
            )
            q = sa.select(ranked.c.tenant_id, ranked.c.metric_code, ranked.c.quantity).where(
                ranked.c.rn == 1
            )
            for tid, metric, qty in s.execute(q):
                slot(tid, metric, ws, we)["latest"] = _num(qty)
    return usage


@dataclass
class _Loaded:
    """What rating a chunk of tenants reads from the store, read in a few statements."""

    tenants: Sequence[Any]  # rows: id, key, timezone, country, region
    subs: dict[uuid.UUID, list[Any]]
    treatments: dict[uuid.UUID, dict[tuple[str, str], Any]]
    charges: dict[uuid.UUID, list[Any]]
    plan_slots: dict[uuid.UUID, list[Slot]]
    billed: dict[str, Any]
    usage: UsageMap
    late: dict[uuid.UUID, late_usage.LateBill] = field(default_factory=dict)


@dataclass
class _Rated:
    """The rows a chunk writes: invoices (with each one's tenant key), lines, and the
    charges and subscriptions those lines bill."""

    invoices: list[dict[str, Any]] = field(default_factory=list)
    tenant_keys: list[str] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    charges: list[uuid.UUID] = field(default_factory=list)
    subs: set[uuid.UUID] = field(default_factory=set)
    late: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (event, invoice)


def _chunk(
    s: Session,
    ids: list[uuid.UUID],
    year: int,
    month: int,
    period: str,
    cat: Catalog,
    run_id: str | None,
    write: bool,
    check_all: bool = False,
) -> RunResult:
    """Bill a chunk of tenants: load, rate, write the rows, record their audit and events."""
    result = RunResult(run_id, period, dry_run=not write)
    if write:  # usage of the month recorded meanwhile is either read here or found late
        late_usage.lock_month(s, period)
    loaded = _load(s, ids, year, month, period, cat, check_all)
    if loaded is None:
        return result
    now = clock.now()
    rated = _rate(loaded, year, month, period, cat, run_id, now, result)
    if write:
        invoice_rows.write(s, rated.invoices, rated.lines, rated.charges, rated.subs, now)
        invoice_rows.record_created(s, rated.invoices, rated.tenant_keys, now)
        late_usage.mark(s, rated.late)
    return result


def _load(
    s: Session,
    ids: list[uuid.UUID],
    year: int,
    month: int,
    period: str,
    cat: Catalog,
    check_all: bool,
) -> _Loaded | None:
    """The chunk's tenants not yet invoiced for the period, with their subscriptions, tax
    treatments, periods to bill, lines already billed, usage and submitted charges; None
    when every tenant of the chunk is invoiced already."""
    invoiced = (
        sa.select(T_INV.c.id)
        .where(T_INV.c.tenant_id == T_TEN.c.id, T_INV.c.period == period, T_INV.c.kind == "period")
        .exists()
    )
    tenants = s.execute(
        sa.select(T_TEN.c.id, T_TEN.c.key, T_TEN.c.timezone, T_TEN.c.country, T_TEN.c.region)
        .where(id_in(s, T_TEN.c.id, ids), ~invoiced)
        .order_by(T_TEN.c.id)
    ).all()
    todo = [t.id for t in tenants]
    if not todo:
        return None
    subs: dict[uuid.UUID, list[Any]] = defaultdict(list)
    sub_cols = [
        T_SUB.c[c]
        for c in (
            "id",
            "tenant_id",
            "plan_id",
            "started_at",
            "trial_ends_at",
            "cancel_at",
            "cycle_limit",
            "periods_billed",
            "coupon_code",
            "coupon_periods_used",
        )
    ]
    for row in s.execute(
        sa.select(*sub_cols).where(id_in(s, T_SUB.c.tenant_id, todo), _billable_subs(year, month))
    ):
        subs[row.tenant_id].append(row)
    treatments: dict[uuid.UUID, dict[tuple[str, str], Any]] = defaultdict(dict)
    for row in s.execute(sa.select(T_TAXT).where(id_in(s, T_TAXT.c.tenant_id, todo))):
        treatments[row.tenant_id][(row.country, row.region or "")] = row
    tz_of = {t.id: t.timezone or "UTC" for t in tenants}
    plan_slots, windows, maybe = _periods(subs, tz_of, year, month, cat, check_all)
    billed = existing_lines(s, maybe) if maybe else {}
    unique, latest = cat.special()
    usage = aggregate_usage(s, windows, unique, latest, cat.time_metrics(), cat.aggregations())
    charges: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in s.execute(
        sa.select(T_CHG).where(id_in(s, T_CHG.c.tenant_id, todo), T_CHG.c.status == "submitted")
    ):
        charges[row.tenant_id].append(row)
    late = late_usage.load(s, todo, tz_of, period, cat)
    return _Loaded(tenants, subs, treatments, charges, plan_slots, billed, usage, late)


def _periods(
    subs: dict[uuid.UUID, list[Any]],
    tz_of: dict[uuid.UUID, str],
    year: int,
    month: int,
    cat: Catalog,
    check_all: bool,
) -> tuple[dict[uuid.UUID, list[Slot]], dict[tuple[datetime, datetime], list[Any]], list[str]]:
    """Periods to bill per subscription, usage windows (tenants per window) and the line
    keys that may already exist."""
    plan_slots: dict[uuid.UUID, list[Slot]] = {}
    windows: dict[tuple[datetime, datetime], list[Any]] = defaultdict(list)
    maybe: list[str] = []
    for tid, tsubs in subs.items():
        tz = tz_of[tid]
        ms = month_bounds(year, month, tz)[0]
        for sub in tsubs:
            plan = cat.plans.get(sub.plan_id)
            if plan is None:
                continue
            sl = slots(sub, plan, tz, year, month)
            plan_slots[sub.id] = sl
            has_usage = any(ch.get("kind") in USAGE_KINDS for ch in plan.charges)
            check = check_all or billing_start(sub) >= ms
            if sub.periods_billed == 0 and has_setup_fee(plan):
                maybe.append(setup_key(sub.id))
            for slot in sl:
                if slot.arrears and has_usage:
                    windows[(slot.eff_start, slot.eff_end)].append(tid)
                for idx, ch in enumerate(plan.charges):
                    bucket = ch.get("kind") == "bucket"
                    if bucket and slot.prev_start is not None:
                        maybe.append(line_key(sub.id, idx, slot.prev_start, slot.start))
                    if check:
                        maybe.append(line_key(sub.id, idx, slot.start, slot.end))
                        if bucket:
                            maybe.append(fee_key(sub.id, idx, slot.start, slot.end))
            if check:
                maybe.extend(bundle_rating.maybe_keys(cat.bundle_parts, sub.id, sl))
    return plan_slots, windows, maybe


def _rate(
    loaded: _Loaded,
    year: int,
    month: int,
    period: str,
    cat: Catalog,
    run_id: str | None,
    now: datetime,
    result: RunResult,
) -> _Rated:
    """Rate each tenant into invoice and line rows, counting into ``result``. A tenant
    whose rating fails is recorded in ``result.failed`` and the others carry on."""
    usage, billed, plan_slots = loaded.usage, loaded.billed, loaded.plan_slots
    subs, charges, treatments = loaded.subs, loaded.charges, loaded.treatments
    inv_rows: list[dict[str, Any]] = []
    inv_keys: list[str] = []  # the tenant key of each invoice
    line_rows: list[dict[str, Any]] = []
    billed_charges: list[uuid.UUID] = []
    billed_subs: set[uuid.UUID] = set()
    late_billed: list[tuple[uuid.UUID, str]] = []
    write = not result.dry_run
    # time-ordered ids, as text: each insert lands at the right edge of the primary key
    # index instead of a random page, and skips making a UUID object per row
    fresh = iter(hex_ids(len(loaded.tenants) * 8))
    for t in loaded.tenants:
        try:
            invs = rate_tenant(
                t,
                subs.get(t.id, []),
                usage,
                charges.get(t.id, []),
                year,
                month,
                cat,
                billed=billed,
                slots_of=plan_slots,
                treatments=treatments.get(t.id),
                late=loaded.late[t.id].lines if t.id in loaded.late else None,
            )
        except Exception as exc:  # noqa: BLE001 - reported: kept in the run's failed list
            result.failed.append({"tenant": t.key, "reason": str(exc)[:300]})
            continue
        result.tenants += 1
        for currency, (lines, totals) in invs.items():
            inv_id = next(fresh, None) or new_id().hex
            inv_rows.append(
                invoice_row(inv_id, t.id, run_id, period, "period", currency, totals, now)
            )
            inv_keys.append(t.key)
            for ln in lines:
                ln.update(
                    id=next(fresh, None) or new_id().hex,
                    invoice_id=inv_id,
                    created_at=now,
                    updated_at=now,
                )
                line_rows.append(ln)
                if ln["kind"] == "one_off":
                    billed_charges.append(uuid.UUID(ln["charge_ref"]))
                elif ln["subscription_id"] is not None and not ln["detail"].get("late"):
                    billed_subs.add(ln["subscription_id"])
            if t.id in loaded.late:
                events = loaded.late[t.id].events.get(currency, [])
                late_billed.extend((e, inv_id) for e in events)
                result.late_events += len(events)
            result.invoices += 1
            result.totals[currency] = result.totals.get(currency, 0) + totals["total_minor"]
            if not write:
                result.preview.append({"tenant": t.key, "currency": currency, **totals})
    result.lines += len(line_rows)
    return _Rated(inv_rows, inv_keys, line_rows, billed_charges, billed_subs, late_billed)


def run_requested(args: dict[str, Any], url: str | None = None) -> dict[str, Any]:
    """Do a run queued by ``mno billing run --async`` (``args``: ``period``, ``tenant``,
    ``issue``, ``retry_failed``), the same work as the foreground command. Returns the
    outcome (``RunResult.as_dict`` with totals as money), with ``error`` when no tenant
    could be billed (the foreground command's exit 1); failed tenants are listed in
    ``errors``, as there."""
    from mno.billing.issuing import issue_drafts
    from mno.money import money_json

    period = args.get("period")
    if args.get("retry_failed"):
        result = retry_failed(str(args["retry_failed"]), url=url)
    else:
        period = period or default_period()
        result = run(period, url=url, tenant_key=args.get("tenant"))
    if args.get("issue") and result.run_id:
        if period:
            result.issued = len(issue_drafts(period=period, from_runs_only=True, url=url))
        else:
            result.issued = len(issue_drafts(result.run_id, url=url))
    data = result.as_dict()
    data["totals"] = {cur: money_json(v, cur) for cur, v in result.totals.items()}
    if result.refused:
        data["error"] = f"no tenant could be billed for {result.period}"
    return data
