"""$filter compiled to SQL against a reference computed in Python, on SQLite and
PostgreSQL: filters drawn by hypothesis over a fixed set of invoices."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mno.connec import filters, queries
from mno.connec.writes import Op, Writer, apply
from mno.errors import BadInput

Pred = Callable[[dict[str, Any]], bool]
STATUSES = ["draft", "authorised", "paid", "void"]


def _invoice(rng: random.Random, i: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "transaction_date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "currency": rng.choice(["USD", "EUR"]),
        "total_amount": f"{rng.randint(-500, 50000)}.{rng.randint(0, 99):02d}",
    }
    if rng.random() < 0.8:
        data["number"] = f"inv{rng.randint(0, 999):03d}"
    if rng.random() < 0.7:
        data["status"] = rng.choice(STATUSES)
    if rng.random() < 0.6:
        data["balance"] = f"{rng.randint(0, 900)}.{rng.randint(0, 9)}"
    if rng.random() < 0.5:
        data["due_date"] = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    elif rng.random() < 0.5:
        data["due_date"] = None
    return data


@pytest.fixture
def invoices(session: Any) -> tuple[Writer, list[dict[str, Any]]]:
    from mno.tenancy import apps, tenants

    rng = random.Random(24)
    rows = [_invoice(rng, i) for i in range(80)]
    with session() as s:
        tenants.create(s, "acme", name="Acme")
        t = tenants.get(s, "acme")
        apps.create(s, "CRM", code="crm", owner="acme")
        app = apps.get(s, "crm")
        writer = Writer(t.id, app.id, "crm")
        out = apply(s, writer, [Op("create", "invoices", d) for d in rows])
    assert all(r.status == 201 for r in out.results)
    return writer, [r.record["data"] | {"_id": r.record["id"]} for r in out.results]


# -- the reference ------------------------------------------------------------------------

DECIMALS = ("total_amount", "balance")
TEXTS = ("number", "status", "currency", "transaction_date", "due_date")


def _cmp(op: str, a: Any, b: Any) -> bool:
    return {
        "eq": a == b,
        "ne": a != b,
        "gt": a > b,
        "ge": a >= b,
        "lt": a < b,
        "le": a <= b,
    }[op]


def compare(field: str, op: str, lit: Any) -> Pred:
    def pred(rec: dict[str, Any]) -> bool:
        value = rec.get(field)
        if lit is None:
            return (value is None) if op == "eq" else (value is not None)
        if value is None:
            return op == "ne"
        if field in DECIMALS:
            return _cmp(op, Decimal(value), Decimal(lit))
        return _cmp(op, value, lit)

    return pred


def literal_text(field: str, lit: Any) -> str:
    if lit is None:
        return "null"
    if field in DECIMALS:
        return str(lit)
    if field in ("transaction_date", "due_date") and lit.count("-") == 2:
        return lit  # a bare date literal
    return "'" + lit.replace("'", "''") + "'"


decimal_lits = st.builds(lambda a, b: f"{a}.{b:02d}", st.integers(-600, 51000), st.integers(0, 99))
date_lits = st.builds(lambda m, d: f"2024-{m:02d}-{d:02d}", st.integers(1, 12), st.integers(1, 28))
text_lits = {
    "number": st.builds(lambda n: f"inv{n:03d}", st.integers(0, 999)),
    "status": st.sampled_from(STATUSES + ["it's"]),
    "currency": st.sampled_from(["USD", "EUR", "GBP"]),
    "transaction_date": date_lits,
    "due_date": date_lits,
}


@st.composite
def leaves(draw: Any) -> tuple[str, Pred]:
    field = draw(st.sampled_from(DECIMALS + TEXTS))
    if field in TEXTS and field != "status" and draw(st.booleans()) and field != "currency":
        text = draw(st.sampled_from(["inv0", "v1", "-0", "2024-0", "INV", "9"]))
        return (
            f"contains({field}, '{text}')",
            lambda r, f=field, t=text: r.get(f) is not None and t.lower() in r[f].lower(),
        )
    op = draw(st.sampled_from(filters.OPS))
    if op in ("eq", "ne") and draw(st.integers(0, 5)) == 0:
        lit = None
    else:
        lit = draw(decimal_lits if field in DECIMALS else text_lits[field])
    return f"{field} {op} {literal_text(field, lit)}", compare(field, op, lit)


def combine(children: Any) -> Any:
    def both(op: str) -> Any:
        return st.tuples(children, children).map(
            lambda ab: (
                f"({ab[0][0]}) {op} ({ab[1][0]})",
                (lambda r: ab[0][1](r) and ab[1][1](r))
                if op == "and"
                else (lambda r: ab[0][1](r) or ab[1][1](r)),
            )
        )

    negate = children.map(lambda a: (f"not ({a[0]})", lambda r: not a[1](r)))
    return st.one_of(both("and"), both("or"), negate)


filters_st = st.recursive(leaves(), combine, max_leaves=6)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(case=filters_st)
def test_filters_match_the_reference(session: Any, invoices: Any, case: tuple[str, Pred]):
    writer, rows = invoices
    text, pred = case
    with session(write=False) as s:
        page = queries.list_records(s, writer, "invoices", filter=text, limit=1000)
    got = sorted(r["id"] for r in page.records)
    want = sorted(r["_id"] for r in rows if pred(r))
    assert got == want, text


def test_filter_examples(session: Any, invoices: Any):
    writer, rows = invoices

    def ids(text: str) -> list[str]:
        with session(write=False) as s:
            page = queries.list_records(s, writer, "invoices", filter=text, limit=1000)
            return sorted(r["id"] for r in page.records)

    big = sorted(r["_id"] for r in rows if Decimal(r["total_amount"]) >= Decimal("10000"))
    assert big and ids("total_amount ge 10000") == big
    assert ids("total_amount ge '10000'") == big
    h1 = sorted(
        r["_id"]
        for r in rows
        if "2024-01-01" <= r["transaction_date"] <= "2024-06-30" and r["currency"] == "USD"
    )
    assert (
        ids(
            "transaction_date ge 2024-01-01 and transaction_date le 2024-06-30 and "
            "(currency eq 'USD')"
        )
        == h1
    )
    assert ids("currency eq 'usd'") == []
    no_due = sorted(r["_id"] for r in rows if r.get("due_date") is None)
    assert ids("due_date eq null") == no_due
    assert ids(f"id eq '{rows[0]['_id']}'") == [rows[0]["_id"]]
    assert ids("id eq 'not-a-uuid'") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("total_amount gt", "ends early"),
        ("total_amount gt 'lots'", "does not compare"),
        ("nope eq 1", "no field 'nope'"),
        ("status like 'x'", "unknown operator"),
        ("(status eq 'paid'", r"expected \)"),
        ("status eq 'paid' )", "unexpected"),
        ("status eq 'paid' and", "ends early"),
        ("total_amount gt null", "null compares with eq and ne only"),
        ("contains(total_amount, '1')", "needs a text field"),
        ("lines eq 'x'", "structured data"),
        ("status eq #", "unexpected"),
        ("(" * 40 + "status eq 'x'" + ")" * 40, "nests deeper"),
    ],
)
def test_bad_filters_are_refused(text: str, message: str):
    from mno.connec import entities
    from mno.store.models.sync import SyncRecord
    from mno.store.types import table_of

    with pytest.raises(BadInput, match=message):
        filters.where(text, table_of(SyncRecord), entities.get("invoices"))


def test_orderby_select_and_cursor_pages(session: Any, invoices: Any):
    writer, rows = invoices
    seen: list[dict[str, Any]] = []
    cursor = None
    with session(write=False) as s:
        while True:
            page = queries.list_records(
                s,
                writer,
                "invoices",
                orderby="total_amount desc",
                select="total_amount,number",
                limit=7,
                cursor=cursor,
            )
            seen.extend(page.records)
            cursor = page.next
            if cursor is None:
                break
        amounts = [Decimal(r["data"]["total_amount"]) for r in seen]
        assert amounts == sorted((Decimal(r["total_amount"]) for r in rows), reverse=True)
        assert all(set(r["data"]) <= {"total_amount", "number"} for r in seen)
        # the default order pages by (updated_at, id) without repeats
        keyset: list[str] = []
        cursor = None
        while True:
            page = queries.list_records(s, writer, "invoices", limit=9, cursor=cursor)
            keyset.extend(r["id"] for r in page.records)
            cursor = page.next
            if cursor is None:
                break
        assert sorted(keyset) == sorted(r["_id"] for r in rows) and len(set(keyset)) == 80
        with pytest.raises(BadInput, match="bad cursor"):
            queries.list_records(s, writer, "invoices", cursor="!!!")
        other = Writer(uuid.uuid4(), writer.app_id, "crm")
        assert queries.list_records(s, other, "invoices").records == []


def test_equality_on_postgres_is_a_containment_test():
    """On PostgreSQL ``eq`` on a text or date field compiles to ``data @> …`` (what the GIN
    index on the records' jsonb answers); numbers keep their cast; SQLite keeps
    ``json_extract``."""
    from sqlalchemy.dialects import postgresql, sqlite

    from mno.connec import entities
    from mno.store.models.sync import SyncRecord
    from mno.store.types import table_of

    text = "status eq 'paid' and transaction_date eq 2024-01-31 and total_amount eq 5"
    ent, table = entities.get("invoices"), table_of(SyncRecord)
    pg = str(filters.where(text, table, ent, postgres=True).compile(dialect=postgresql.dialect()))
    assert pg.count("@>") == 2
    assert "AS NUMERIC(38, 10)" in pg
    lite = str(filters.where(text, table, ent).compile(dialect=sqlite.dialect()))
    assert "@>" not in lite and "JSON_EXTRACT" in lite.upper()


ORDERINGS = [
    "total_amount desc",
    "status, total_amount desc",
    "due_date desc, number",
    "balance",
    "number desc, currency",
    "updated_at desc",
    "version, transaction_date desc",
]


def _sort_key(order: list[tuple[str, bool]], rec: dict[str, Any]) -> list[tuple[int, Any]]:
    """A comparable key of a shown record in an ``$orderby`` order: nulls after every
    value (ascending) or before (descending), then the id."""
    out: list[tuple[int, Any]] = []
    for name, desc in order:
        value = rec[name] if name in ("id", "version", "created_at", "updated_at") else None
        if name not in ("id", "version", "created_at", "updated_at"):
            value = rec["data"].get(name)
            if value is not None and name in DECIMALS:
                value = Decimal(value)
        if value is None:
            out.append((0 if desc else 1, None))
        elif desc:
            out.append((1, _Reverse(value)))
        else:
            out.append((0, value))
    out.append((0, uuid.UUID(rec["id"])))
    return out


class _Reverse:
    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reverse) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reverse) and self.value == other.value


@pytest.mark.parametrize("orderby", ORDERINGS)
def test_orderby_pages_are_keyset_pages_under_inserts(session: Any, invoices: Any, orderby: str):
    """Walking the pages of an ``$orderby`` while other invoices are inserted between
    pages never skips nor repeats one that was there before, and every page follows the
    page before it in the order (the cursor holds the last row's sort values and id)."""
    from mno.connec import entities

    writer, rows = invoices
    before = {r["_id"] for r in rows}
    order = filters.order_by(orderby, entities.get("invoices"))
    rng = random.Random(orderby)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        with session(write=False) as s:
            page = queries.list_records(
                s, writer, "invoices", orderby=orderby, limit=7, cursor=cursor
            )
        seen.extend(page.records)
        cursor = page.next
        if cursor is None:
            break
        with session() as s:  # others write meanwhile, anywhere in the order
            out = apply(s, writer, [Op("create", "invoices", _invoice(rng, 0)) for _ in range(5)])
            assert all(r.status == 201 for r in out.results)
    ids = [r["id"] for r in seen]
    assert len(ids) == len(set(ids)), "a record was repeated"
    assert before <= set(ids), "a record that was there before was skipped"
    keys = [_sort_key(order, r) for r in seen]
    assert all(not keys[i + 1] < keys[i] for i in range(len(keys) - 1))
    with session(write=False) as s:
        with pytest.raises(BadInput, match="bad cursor"):
            bad = queries._encode({"k": ["x"], "i": str(uuid.uuid4())})
            queries.list_records(s, writer, "invoices", orderby="total_amount", cursor=bad)
