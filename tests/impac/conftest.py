"""Impac fixtures: canonical records written straight into ``sync_record`` (one
transaction), following the shared entity contract, and the books of tenant ``acme``.

The books (window 2026-01-01 .. 2026-06-30, 181 days; as-of day 2026-06-30):

invoices (USD unless said)
  i1  Alpha 2026-01-10 due 02-09  1000.00  paid, balance 0
  i2  Alpha 2026-03-05 due 03-20   500.50  authorised, owed 500.50   102 days past due
  i3  Beta  2026-04-15 due 05-15   300.25  authorised, owed 100.25    46 days
  i4  Beta  2026-06-01 due 06-10   200.00  authorised, owed 200.00    20 days
  i5  Alpha 2026-06-20 due 07-20    99.99  authorised, owed 99.99     not yet due
  i6  Beta  2026-05-01             700.00  draft (left out)
  i7  Alpha 2026-02-01             400.00  void (left out)
  i8  supplier 2026-03-01          800.00  authorised (left out: a supplier invoice)
  i9  Beta  2026-04-01             250.00  authorised, deleted (left out)
  i10 Alpha 2026-04-10 due 04-30    80.10  authorised, owed 80.10     61 days
  i11 Alpha 2025-12-15 due 2026-01-14 60.00 authorised, owed 60.00  167 days (before the window)
  e1  Beta  2026-05-10 due 06-09  1200.00 EUR authorised, owed      21 days
  e2  Alpha 2026-02-10             800.00 EUR paid
payments: 2026-02-05 1000.00 USD, 2026-05-20 200.00 USD, 2026-03-01 800.00 EUR
opportunities: open USD prospecting 1000.00@10%, proposal 2500.50@40%, negotiation
  333.33@75%; open EUR proposal 1000.00@50%; won USD 5000 (03-15) and 700 (05-02), lost
  USD 900 (04-20); won EUR 1000 (2025-11-30) and lost USD (2026-07-05) are outside.
employees: h1 hired 2025-06-01; h2 2025-09-15 left 2026-02-15; h3 2026-01-31; h4
  2026-03-01 left 2026-03-31; h5 2026-06-30; h6 2026-07-01; h7 2024-01-01 left 2026-01-01.

Tenant ``other`` has one large invoice, payment, opportunity and employee: none of it may
show in ``acme``'s figures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

WINDOW = {"start": "2026-01-01", "end": "2026-06-30"}


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An upgraded empty SQLite store, made once; each test starts from a copy."""
    from mno.store import db

    path = tmp_path_factory.mktemp("impac-template") / "store.db"
    url = f"sqlite:///{path}"
    db.upgrade(db.get_engine(url))
    engine = db._engines.pop(db.normalize_url(url), None)
    if engine is not None:
        engine.dispose()
    return path


@pytest.fixture
def sqlite_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path
) -> Iterator[str]:
    """An empty SQLite store file (a copy of the upgraded template), via MNO_DB_URL."""
    from mno.store import db

    path = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    monkeypatch.setenv("MNO_DB_URL", url)
    yield url
    engine = db._engines.pop(db.normalize_url(url), None)
    if engine is not None:
        engine.dispose()
    db._checked.discard(url)


def insert_records(
    session: Callable[..., AbstractContextManager[Any]],
    tenant: str,
    records: list[tuple[str, dict[str, Any]]],
    ids: dict[str, uuid.UUID] | None = None,
) -> dict[str, uuid.UUID]:
    """Write ``(entity, data)`` records of ``tenant`` in one transaction; data may carry a
    ``_key`` (its id is returned under it) and ``_deleted``."""
    from mno.store.models.sync import SyncRecord
    from mno.tenancy import tenants

    ids = dict(ids or {})
    with session() as s:
        tenant_id = tenants.get(s, tenant).id
        for entity, data in records:
            data = dict(data)
            key = data.pop("_key", None)
            deleted = data.pop("_deleted", False)
            rid = ids.get(key) if key else None
            rid = rid or uuid.uuid4()
            if key:
                ids[key] = rid
            body = json.dumps(data, sort_keys=True)
            s.add(
                SyncRecord(
                    id=rid,
                    tenant_id=tenant_id,
                    entity=entity,
                    data=data,
                    content_hash=hashlib.md5(body.encode()).hexdigest(),
                    deleted_at=datetime(2026, 6, 1, tzinfo=UTC) if deleted else None,
                )
            )
    return ids


def _inv(
    number: str,
    org: str | None,
    day: str,
    due: str | None,
    total: str,
    balance: str,
    status: str,
    currency: str = "USD",
    **extra: Any,
) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {
        "number": number,
        "type": "customer",
        "transaction_date": day,
        "currency": currency,
        "total_amount": total,
        "balance": balance,
        "status": status,
        "lines": [{"description": "work", "quantity": "1", "unit_price": total, "total": total}],
        **extra,
    }
    if org:
        data["organization_id"] = org
    if due:
        data["due_date"] = due
    return ("invoices", data)


@pytest.fixture
def books(session: Callable[..., AbstractContextManager[Any]]) -> dict[str, uuid.UUID]:
    """Tenants ``acme`` (the books above) and ``other``; returns acme's record ids."""
    return load_books(session)


def load_books(session: Callable[..., AbstractContextManager[Any]]) -> dict[str, uuid.UUID]:
    from mno.tenancy import tenants

    with session() as s:
        tenants.create(s, "acme", name="Acme Corp", if_not_exists=True)
        tenants.create(s, "other", name="Other", if_not_exists=True)
    alpha, beta = str(uuid.uuid4()), str(uuid.uuid4())
    orgs: dict[str, uuid.UUID] = {"alpha": uuid.UUID(alpha), "beta": uuid.UUID(beta)}
    records: list[tuple[str, dict[str, Any]]] = [
        ("organizations", {"_key": "alpha", "name": "Alpha Ltd", "is_customer": True}),
        ("organizations", {"_key": "beta", "name": "Beta GmbH", "is_customer": True}),
        _inv("i1", alpha, "2026-01-10", "2026-02-09", "1000.00", "0", "paid"),
        _inv("i2", alpha, "2026-03-05", "2026-03-20", "500.50", "500.50", "authorised"),
        _inv("i3", beta, "2026-04-15", "2026-05-15", "300.25", "100.25", "authorised"),
        _inv("i4", beta, "2026-06-01", "2026-06-10", "200.00", "200.00", "authorised"),
        _inv("i5", alpha, "2026-06-20", "2026-07-20", "99.99", "99.99", "authorised"),
        _inv("i6", beta, "2026-05-01", "2026-05-31", "700.00", "700.00", "draft"),
        _inv("i7", alpha, "2026-02-01", "2026-03-03", "400.00", "400.00", "void"),
        _inv(
            "i8",
            None,
            "2026-03-01",
            "2026-03-31",
            "800.00",
            "800.00",
            "authorised",
            type="supplier",
        ),
        _inv(
            "i9", beta, "2026-04-01", "2026-05-01", "250.00", "250.00", "authorised", _deleted=True
        ),
        _inv("i10", alpha, "2026-04-10", "2026-04-30", "80.10", "80.10", "authorised"),
        _inv("i11", alpha, "2025-12-15", "2026-01-14", "60.00", "60.00", "authorised"),
        _inv("e1", beta, "2026-05-10", "2026-06-09", "1200.00", "1200.00", "authorised", "EUR"),
        _inv("e2", alpha, "2026-02-10", "2026-03-12", "800.00", "0.00", "paid", "EUR"),
        (
            "payments",
            {
                "transaction_date": "2026-02-05",
                "amount": "1000.00",
                "currency": "USD",
                "organization_id": alpha,
            },
        ),
        (
            "payments",
            {
                "transaction_date": "2026-05-20",
                "amount": "200.00",
                "currency": "USD",
                "organization_id": beta,
            },
        ),
        ("payments", {"transaction_date": "2026-03-01", "amount": "800.00", "currency": "EUR"}),
        ("payments", {"transaction_date": "2025-12-20", "amount": "5.00", "currency": "USD"}),
        (
            "opportunities",
            {
                "name": "o1",
                "stage": "prospecting",
                "amount": "1000.00",
                "currency": "USD",
                "probability": 10,
            },
        ),
        (
            "opportunities",
            {
                "name": "o2",
                "stage": "proposal",
                "amount": "2500.50",
                "currency": "USD",
                "probability": 40,
            },
        ),
        (
            "opportunities",
            {
                "name": "o3",
                "stage": "negotiation",
                "amount": "333.33",
                "currency": "USD",
                "probability": 75,
            },
        ),
        (
            "opportunities",
            {
                "name": "o4",
                "stage": "proposal",
                "amount": "1000.00",
                "currency": "EUR",
                "probability": 50,
            },
        ),
        (
            "opportunities",
            {
                "name": "o5",
                "stage": "won",
                "amount": "5000.00",
                "currency": "USD",
                "probability": 100,
                "closed_date": "2026-03-15",
            },
        ),
        (
            "opportunities",
            {
                "name": "o6",
                "stage": "won",
                "amount": "700.00",
                "currency": "USD",
                "probability": 100,
                "closed_date": "2026-05-02",
            },
        ),
        (
            "opportunities",
            {
                "name": "o7",
                "stage": "lost",
                "amount": "900.00",
                "currency": "USD",
                "probability": 0,
                "closed_date": "2026-04-20",
            },
        ),
        (
            "opportunities",
            {
                "name": "o8",
                "stage": "won",
                "amount": "1000.00",
                "currency": "EUR",
                "probability": 100,
                "closed_date": "2025-11-30",
            },
        ),
        (
            "opportunities",
            {
                "name": "o9",
                "stage": "lost",
                "amount": "10.00",
                "currency": "USD",
                "probability": 0,
                "closed_date": "2026-07-05",
            },
        ),
        ("employees", {"first_name": "H", "last_name": "One", "hire_date": "2025-06-01"}),
        (
            "employees",
            {
                "first_name": "H",
                "last_name": "Two",
                "hire_date": "2025-09-15",
                "termination_date": "2026-02-15",
            },
        ),
        (
            "employees",
            {
                "first_name": "H",
                "last_name": "Three",
                "hire_date": "2026-01-31",
                "termination_date": None,
            },
        ),
        (
            "employees",
            {
                "first_name": "H",
                "last_name": "Four",
                "hire_date": "2026-03-01",
                "termination_date": "2026-03-31",
            },
        ),
        ("employees", {"first_name": "H", "last_name": "Five", "hire_date": "2026-06-30"}),
        ("employees", {"first_name": "H", "last_name": "Six", "hire_date": "2026-07-01"}),
        (
            "employees",
            {
                "first_name": "H",
                "last_name": "Seven",
                "hire_date": "2024-01-01",
                "termination_date": "2026-01-01",
            },
        ),
    ]
    ids = insert_records(session, "acme", records, orgs)
    insert_records(
        session,
        "other",
        [
            _inv("x1", None, "2026-03-01", "2026-03-02", "9999.00", "9999.00", "authorised"),
            (
                "payments",
                {"transaction_date": "2026-03-01", "amount": "9999.00", "currency": "USD"},
            ),
            (
                "opportunities",
                {
                    "name": "x",
                    "stage": "proposal",
                    "amount": "9999.00",
                    "currency": "USD",
                    "probability": 90,
                },
            ),
            ("employees", {"first_name": "X", "last_name": "Y", "hire_date": "2025-01-01"}),
        ],
    )
    return ids
