"""Usage events: record one (idempotent by key) or import a file atomically.

Usage for a period already invoiced for its tenant is late: it is kept for the tenant's
next invoice, or refused, as ``billing.late_usage`` says (``mno.billing.late_usage``)."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from mno import clock
from mno.billing import late_usage
from mno.errors import BadInput, Conflict, NotFound
from mno.money import to_decimal
from mno.store import audit
from mno.store.models.billing import BillingMetric, UsageEvent
from mno.store.models.tenancy import Tenant
from mno.store.types import new_id, table_of
from mno.tenancy import tenants


def _metric(session: Session, code: str) -> BillingMetric:
    m = session.exec(select(BillingMetric).where(BillingMetric.code == code)).first()
    if m is None:
        raise NotFound(f"metric {code!r} not found", "create it with mno metric create")
    return m


def record(
    session: Session,
    tenant_key: str,
    metric_code: str,
    quantity: Decimal,
    *,
    at: datetime | None = None,
    idempotency_key: str | None = None,
    properties: dict[str, Any] | None = None,
) -> tuple[UsageEvent, bool]:
    """Record usage; a repeated idempotency key returns the first event and False. Usage
    for a period already invoiced is late (``late_usage``): kept for the next invoice, or
    refused with ``Conflict``."""
    tenant = tenants.get(session, tenant_key)
    _metric(session, metric_code)
    qty = to_decimal(quantity)
    if at is not None and at.tzinfo is None:
        raise BadInput("at: give a timezone")
    if idempotency_key:
        found = session.exec(
            select(UsageEvent).where(
                UsageEvent.tenant_id == tenant.id, UsageEvent.idempotency_key == idempotency_key
            )
        ).first()
        if found is not None:
            return found, False
    closed = late_usage.closed_periods(session, [(tenant.id, at)])[0]
    if closed is not None and late_usage.policy() == late_usage.REJECT:
        raise closed.refusal(tenant.key)
    event = UsageEvent(
        tenant_id=tenant.id,
        metric_code=metric_code,
        quantity=qty,
        at=at or clock.now(),
        idempotency_key=idempotency_key,
        properties=properties or {},
        late_period=closed.period if closed else None,
    )
    session.add(event)
    session.flush()
    return event, True


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's rows with their line numbers; anything that is not UTF-8 text, a JSON
    object per line or well-formed CSV is refused with the line it is on."""
    if path.suffix not in (".jsonl", ".csv"):
        raise BadInput("usage import takes a .csv or .jsonl file")
    n = 1
    try:
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        yield n, _json_object(n, line)
        else:
            with path.open(newline="", encoding="utf-8") as fh:
                for n, row in enumerate(csv.DictReader(fh), 2):
                    yield n, row
    except UnicodeDecodeError as exc:
        raise BadInput(f"line {n}: not UTF-8 text", "usage import reads text files") from exc
    except csv.Error as exc:
        raise BadInput(f"line {n}: not valid CSV ({exc})") from exc


def _json_object(n: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"line {n}: not JSON ({exc.msg})") from exc
    except RecursionError as exc:
        raise BadInput(f"line {n}: JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise BadInput(f"line {n}: expected a JSON object, got {type(value).__name__}")
    return value


def import_file(
    session: Session,
    path: Path,
    on_progress: Callable[[int, int], None] | None = None,
    batch: int = 5000,
) -> int:
    """Validate every row first (line numbers in errors), then insert in one transaction;
    ``on_progress(done, total)`` hears of the rows inserted after each batch.
    Rows for a period already invoiced are late (``late_usage``): kept for the tenant's
    next invoice, or, when late usage is refused, the whole file is (``Conflict`` naming
    the first such line)."""
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    tkeys: dict[str, uuid.UUID] = dict(
        session.execute(sa.select(col(Tenant.key), col(Tenant.id))).all()
    )
    metrics = set(session.execute(sa.select(col(BillingMetric.code))).scalars())
    seen: dict[tuple[Any, str], int] = {}
    zones: dict[uuid.UUID, str | None] = dict(
        session.execute(sa.select(col(Tenant.id), col(Tenant.timezone))).all()
    )
    months: dict[tuple[uuid.UUID, str], int] = {}  # (tenant, month) -> first line
    total = 0
    for n, row in _rows(path):
        total += 1
        checked = _check(n, row, tkeys, metrics)
        months.setdefault(_month(checked, zones), n)
        key = checked["idempotency_key"]
        if key is not None:
            first = seen.setdefault((checked["tenant_id"], key), n)
            if first != n:
                raise BadInput(f"line {n}: id {key!r} repeats line {first}")
    _refuse_recorded(session, seen)
    late = late_usage.invoiced(session, months, lock=True)
    if late and late_usage.policy() == late_usage.REJECT:
        pair = min(late, key=lambda p: months[p])
        key = next(k for k, v in tkeys.items() if v == pair[0])
        refusal = late[pair].refusal(key)
        raise Conflict(f"line {months[pair]}: {refusal.message}", refusal.hint)
    t = table_of(UsageEvent)
    now = clock.now()
    buf: list[dict[str, Any]] = []
    done = 0
    for n, row in _rows(path):
        r = _check(n, row, tkeys, metrics)
        closed_in = late.get(_month(r, zones)) if late else None
        r["late_period"] = closed_in.period if closed_in else None
        buf.append({"id": new_id(), "created_at": now, "updated_at": now, **r})
        if len(buf) >= batch:
            done += _flush(session, t, buf)
            if on_progress:
                on_progress(done, total)
    done += _flush(session, t, buf)
    if on_progress:
        on_progress(done, total)
    audit.record(
        session,
        "usage.import",
        target_type="usage",
        target_id=path.name,
        target=path.name,
        after={"events": done},
    )
    return done


def _month(row: dict[str, Any], zones: dict[uuid.UUID, str | None]) -> tuple[uuid.UUID, str]:
    """A checked row's tenant and the month of its time in the tenant's timezone."""
    return row["tenant_id"], late_usage.period_of(row["at"], zones.get(row["tenant_id"]))


def _refuse_recorded(session: Session, ids: dict[tuple[Any, str], int]) -> None:
    """Refuse a file that holds an id already recorded for its tenant (the import is
    all or nothing, so nothing is written)."""
    by_tenant: dict[Any, list[str]] = {}
    for tenant_id, key in ids:
        by_tenant.setdefault(tenant_id, []).append(key)
    t = table_of(UsageEvent)
    for tenant_id, keys in by_tenant.items():
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            found = session.execute(
                sa.select(t.c.idempotency_key)
                .where(t.c.tenant_id == tenant_id, t.c.idempotency_key.in_(chunk))
                .limit(1)
            ).scalar()
            if found is not None:
                raise BadInput(
                    f"line {ids[(tenant_id, found)]}: id {found!r} is already recorded",
                    "remove the rows that were imported before",
                )


def _flush(session: Session, t: Any, buf: list[dict[str, Any]]) -> int:
    if not buf:
        return 0
    session.execute(t.insert(), buf)
    k = len(buf)
    buf.clear()
    return k


def _usage_id(n: int, value: Any) -> str | None:
    """A row's idempotency id: text (or a whole number) of at most 200 characters."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput(f"line {n}: id must be text, got {type(value).__name__}")
    text = str(value)
    if len(text) > 200:
        raise BadInput(f"line {n}: id is longer than 200 characters")
    return text


def _check(n: int, row: dict[str, Any], tkeys: dict[str, Any], metrics: set[str]) -> dict[str, Any]:
    key = str(row.get("tenant") or "")
    if key not in tkeys:
        raise BadInput(f"line {n}: unknown tenant {key!r}")
    metric = str(row.get("metric") or "")
    if metric not in metrics:
        raise BadInput(f"line {n}: unknown metric {metric!r}")
    try:
        qty = to_decimal(str(row.get("quantity", "")))
    except BadInput as exc:
        raise BadInput(f"line {n}: {exc}") from exc
    at_raw = row.get("at")
    try:
        at = datetime.fromisoformat(str(at_raw)) if at_raw else clock.now()
    except ValueError as exc:
        raise BadInput(f"line {n}: bad time {at_raw!r}") from exc
    if at.tzinfo is None:
        raise BadInput(f"line {n}: time {at_raw!r} has no timezone")
    props = row.get("properties") or {}
    if not isinstance(props, dict):
        raise BadInput(f"line {n}: properties must be an object")
    # CSV: one column per property, named prop.KEY
    props = {**props, **{k[5:]: v for k, v in row.items() if k and k.startswith("prop.") and v}}
    if any(not isinstance(v, str | int) or isinstance(v, bool) for v in props.values()):
        raise BadInput(f"line {n}: property values must be strings or integers")
    return {
        "tenant_id": tkeys[key],
        "metric_code": metric,
        "quantity": qty,
        "at": at,
        "idempotency_key": _usage_id(n, row.get("id")),
        "properties": {str(k): str(v) for k, v in props.items()},
    }
