"""Usage events: record one (idempotent by key) or import a file atomically."""

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
from mno.errors import BadInput, NotFound
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
    """Record usage; a repeated idempotency key returns the first event and False."""
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
    event = UsageEvent(
        tenant_id=tenant.id,
        metric_code=metric_code,
        quantity=qty,
        at=at or clock.now(),
        idempotency_key=idempotency_key,
        properties=properties or {},
    )
    session.add(event)
    session.flush()
    return event, True


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix == ".jsonl":
        with path.open() as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise BadInput(f"line {n}: not JSON ({exc.msg})") from exc
    elif path.suffix == ".csv":
        with path.open(newline="") as fh:
            for n, row in enumerate(csv.DictReader(fh), 2):
                yield n, row
    else:
        raise BadInput("usage import takes a .csv or .jsonl file")


def import_file(
    session: Session, path: Path, progress: Callable[[int], None] | None = None, batch: int = 5000
) -> int:
    """Validate every row first (line numbers in errors), then insert in one transaction."""
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    tkeys: dict[str, uuid.UUID] = dict(
        session.execute(sa.select(col(Tenant.key), col(Tenant.id))).all()
    )
    metrics = set(session.execute(sa.select(col(BillingMetric.code))).scalars())
    count = 0
    for n, row in _rows(path):
        _check(n, row, tkeys, metrics)
        count += 1
    t = table_of(UsageEvent)
    now = clock.now()
    buf: list[dict[str, Any]] = []
    done = 0
    for n, row in _rows(path):
        r = _check(n, row, tkeys, metrics)
        buf.append({"id": new_id(), "created_at": now, "updated_at": now, **r})
        if len(buf) >= batch:
            done += _flush(session, t, buf)
            if progress:
                progress(done)
    done += _flush(session, t, buf)
    if progress:
        progress(done)
    audit.record(
        session,
        "usage.import",
        target_type="usage",
        target_id=path.name,
        target=path.name,
        after={"events": done},
    )
    return done


def _flush(session: Session, t: Any, buf: list[dict[str, Any]]) -> int:
    if not buf:
        return 0
    session.execute(t.insert(), buf)
    k = len(buf)
    buf.clear()
    return k


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
        "idempotency_key": row.get("id") or None,
        "properties": {str(k): str(v) for k, v in props.items()},
    }
