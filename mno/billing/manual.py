"""Manual invoices and adjustments of drafts.

``create`` writes a one-off invoice (kind ``manual``) for a tenant from lines given by
hand, ``description:quantity:unit_price[:tax_code]``; it is a draft like a billing run's,
numbered in the same series when issued (``invoices.issue``), and shown, explained and
exported the same way.

``add_line``, ``edit_line`` and ``remove_line`` change the lines of a draft, a billing
run's or a manual one. An issued invoice is never changed: it is credited instead
(``credit_notes``). After each change the totals are computed again with the rules of a
billing run (``tenant_rating.invoice_totals``): the tenant's tax rate by its address, or
its exemption or reverse charge; a line with a tax code is taxed at that rate, each rate
once on the sum of its lines. A run draft keeps its discount (capped at the subtotal).
A line's amount is its quantity times its unit price, rounded once. Each change writes
an audit row with the line and the totals before and after, and an ``invoice.updated``
event.

Removing a line a billing run wrote frees its period: the next run of that period bills
it again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlmodel import Session, select

from mno.billing import invoices, rating
from mno.billing.tenant_rating import invoice_totals
from mno.errors import BadInput, InvalidTransition
from mno.money import check_currency, from_minor, round_money, to_decimal, to_minor
from mno.store import audit, outbox
from mno.store.models.billing import Invoice, InvoiceLine, TaxRate, TaxTreatment
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

MANUAL_PREFIX = "manual|"


@dataclass(frozen=True, slots=True)
class LineSpec:
    """A line given by hand."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_code: str | None = None


def parse_line(spec: str, *, negative: bool = False) -> LineSpec:
    """``description:quantity:unit_price[:tax_code]``; the description may hold colons.
    A negative unit price (a reduction) only where ``negative`` allows it."""
    parts = spec.split(":")
    tax_code = None
    if len(parts) >= 4 and not _is_number(parts[-1]):
        tax_code = parts.pop().strip() or None
    if len(parts) < 3:
        raise BadInput(
            f"line {spec!r}: write description:quantity:unit_price[:tax_code]",
            'e.g. "Migration work:3:120.00"',
        )
    price, qty = parts.pop(), parts.pop()
    return check_line(
        LineSpec(":".join(parts).strip(), to_decimal(qty), to_decimal(price), tax_code),
        negative=negative,
    )


def _is_number(text: str) -> bool:
    try:
        to_decimal(text)
    except BadInput:
        return False
    return True


def check_line(spec: LineSpec, *, negative: bool = False) -> LineSpec:
    if not spec.description:
        raise BadInput("a line needs a description")
    if len(spec.description) > 500:
        raise BadInput("a line's description is at most 500 characters")
    if spec.quantity <= 0:
        raise BadInput(f"quantity {spec.quantity}: give a positive quantity")
    if spec.unit_price < 0 and not negative:
        raise BadInput(
            f"unit price {spec.unit_price} is negative",
            "a reduction is a line of a draft (mno invoice line add) or a credit note",
        )
    return spec


def _rate_of(session: Session, code: str) -> TaxRate:
    rate = session.exec(select(TaxRate).where(TaxRate.code == code)).first()
    if rate is None:
        raise BadInput(f"unknown tax code {code!r}", "see mno tax-rate list")
    return rate


def _amount(spec: LineSpec, currency: str) -> int:
    return to_minor(round_money(spec.quantity * spec.unit_price, currency), currency)


def _tax_inputs(session: Session, t: Tenant) -> tuple[TaxRate | None, TaxTreatment | None]:
    """The tenant's tax rate by its address, and its treatment, as a billing run finds
    them: the country and region first, then the country alone."""
    country = t.country or ""
    rates = {
        r.region: r for r in session.exec(select(TaxRate).where(TaxRate.country == country)).all()
    }
    treats = {
        r.region: r
        for r in session.exec(
            select(TaxTreatment).where(
                TaxTreatment.tenant_id == t.id, TaxTreatment.country == country
            )
        ).all()
    }
    rate = rates.get(t.region) or rates.get(None)
    treat = treats.get(t.region or "") or treats.get("")
    return rate, treat


def recompute(session: Session, inv: Invoice, lines: list[InvoiceLine]) -> None:
    """The draft's subtotal, discount, tax and total from its lines."""
    cur = inv.currency
    t = tenants.get(session, inv.tenant_id)
    rate, treat = _tax_inputs(session, t)
    rows = [{"amount_minor": ln.amount_minor} for ln in lines]
    if sum(r["amount_minor"] for r in rows) < 0:
        raise BadInput("the invoice's subtotal would be negative")
    discount = from_minor(inv.discount_minor, cur)
    codes = {(ln.detail or {}).get("tax_code") for ln in lines} - {None}
    if treat is not None or not codes:
        totals = invoice_totals(rows, discount, cur, rate, treat)
    elif codes and all((ln.detail or {}).get("tax_code") for ln in lines) and len(codes) == 1:
        totals = invoice_totals(rows, discount, cur, _rate_of(session, str(codes.pop())), None)
    else:
        totals = _by_rate(session, lines, inv, rate)
    for k, v in totals.items():
        if k != "credit_minor":
            setattr(inv, k, v)
    inv.touch()
    session.add(inv)


def _by_rate(
    session: Session, lines: list[InvoiceLine], inv: Invoice, default: TaxRate | None
) -> dict[str, Any]:
    """Lines under several tax rates: each rate once on the sum of its lines."""
    cur = inv.currency
    if inv.discount_minor:
        raise BadInput("a draft with a discount takes one tax rate for all its lines")
    groups: dict[str | None, int] = {}
    for ln in lines:
        code = (ln.detail or {}).get("tax_code") or (default.code if default else None)
        groups[code] = groups.get(code, 0) + ln.amount_minor
    subtotal = sum(groups.values())
    tax = added = 0
    parts = []
    for code, base in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        if code is None:
            continue
        r = _rate_of(session, code)
        tx = to_minor(rating.tax(from_minor(base, cur), to_decimal(r.rate), r.inclusive, cur), cur)
        tax += tx
        added += 0 if r.inclusive else tx
        parts.append(
            {
                "rate": r.code,
                "percent": r.rate,
                "inclusive": r.inclusive,
                "base": str(from_minor(base, cur)),
                "tax": str(from_minor(tx, cur)),
            }
        )
    return {
        "subtotal_minor": subtotal,
        "discount_minor": 0,
        "tax_minor": tax,
        "total_minor": subtotal + added,
        "tax_detail": {"rates": parts},
    }


def _new_line(inv: Invoice, spec: LineSpec, key: str) -> InvoiceLine:
    return InvoiceLine(
        invoice_id=inv.id,
        line_key=key,
        kind="manual" if inv.kind == "manual" else "adjustment",
        description=spec.description,
        quantity=str(spec.quantity),
        unit_price=str(spec.unit_price),
        proration="1",
        amount_minor=_amount(spec, inv.currency),
        detail={"tax_code": spec.tax_code} if spec.tax_code else {},
    )


def _next_key(inv: Invoice, lines: list[InvoiceLine]) -> str:
    prefix = f"{MANUAL_PREFIX}{inv.id.hex}|"
    used = [int(ln.line_key[len(prefix) :]) for ln in lines if ln.line_key.startswith(prefix)]
    return f"{prefix}{max(used, default=0) + 1:04d}"


def create(
    session: Session,
    tenant_key: str,
    lines: list[LineSpec],
    *,
    currency: str | None = None,
    issue: bool = False,
    idempotency_key: str | None = None,
) -> Invoice:
    """A manual invoice for one-off work: a draft, or issued at once with ``issue``;
    ``idempotency_key`` is kept on it (see ``invoices.by_idempotency_key``)."""
    if not lines:
        raise BadInput("a manual invoice needs at least one line", '--line "work:1:100.00"')
    t = tenants.get(session, tenant_key)
    cur = check_currency(currency or t.currency)
    for spec in lines:
        check_line(spec)
        if spec.tax_code:
            _rate_of(session, spec.tax_code)
        _amount(spec, cur)
    inv_id = uuid.uuid4()
    inv = Invoice(
        id=inv_id,
        tenant_id=t.id,
        period=f"manual-{inv_id.hex[:12]}",
        kind="manual",
        status="draft",
        currency=cur,
        idempotency_key=idempotency_key,
    )
    session.add(inv)
    session.flush()
    rows: list[InvoiceLine] = []
    for spec in lines:
        ln = _new_line(inv, spec, _next_key(inv, rows))
        rows.append(ln)
        session.add(ln)
    recompute(session, inv, rows)
    session.flush()
    audit.record(
        session,
        "invoice.create",
        target_type="invoice",
        target_id=inv.id,
        target=str(inv.id),
        after=audit.snapshot(inv),
        tenant_id=t.id,
    )
    outbox.emit(session, "invoice.created", invoices.payload(inv, t.key), t.id)
    if issue:
        return invoices.issue(session, str(inv.id))
    return inv


def _draft(session: Session, invoice_id: str) -> tuple[Invoice, list[InvoiceLine]]:
    inv = invoices.get(session, invoice_id, lock=True)
    if inv.status != "draft":
        name = inv.number or str(inv.id)
        raise InvalidTransition(
            f"invoice {name} is {inv.status}: only drafts are changed",
            f"an issued invoice is credited: mno invoice credit {name} --reason ..."
            if inv.status in ("issued", "paid")
            else None,
        )
    return inv, invoices.lines(session, inv)


def _pick(lines: list[InvoiceLine], n: int) -> InvoiceLine:
    if not 1 <= n <= len(lines):
        raise BadInput(
            f"line {n}: the draft has lines 1 to {len(lines)}" if lines else "the draft has no line"
        )
    return lines[n - 1]


def _totals(inv: Invoice) -> dict[str, Any]:
    return {
        "subtotal_minor": inv.subtotal_minor,
        "discount_minor": inv.discount_minor,
        "tax_minor": inv.tax_minor,
        "total_minor": inv.total_minor,
    }


def _line_state(ln: InvoiceLine | None) -> dict[str, Any] | None:
    if ln is None:
        return None
    return {
        "line_key": ln.line_key,
        "description": ln.description,
        "quantity": ln.quantity,
        "unit_price": ln.unit_price,
        "proration": ln.proration,
        "amount_minor": ln.amount_minor,
        "tax_code": (ln.detail or {}).get("tax_code"),
    }


def _record(
    session: Session,
    inv: Invoice,
    change: str,
    n: int,
    before: tuple[InvoiceLine | None, dict[str, Any]],
    after: InvoiceLine | None,
    old: dict[str, Any] | None = None,
) -> None:
    t = tenants.get(session, inv.tenant_id)
    audit.record(
        session,
        f"invoice.line_{change}",
        target_type="invoice",
        target_id=inv.id,
        target=str(inv.id),
        before={"line": old if old is not None else _line_state(before[0]), **before[1]},
        after={"line": _line_state(after), **_totals(inv)},
        tenant_id=inv.tenant_id,
    )
    outbox.emit(
        session,
        "invoice.updated",
        {**invoices.payload(inv, t.key), "change": f"line_{change}", "line": n},
        inv.tenant_id,
    )


def add_line(session: Session, invoice_id: str, spec: LineSpec) -> Invoice:
    """Add a line to a draft (a negative unit price makes it a reduction)."""
    check_line(spec, negative=True)
    inv, lines = _draft(session, invoice_id)
    if spec.tax_code:
        _rate_of(session, spec.tax_code)
    before = _totals(inv)
    ln = _new_line(inv, spec, _next_key(inv, lines))
    session.add(ln)
    lines = sorted([*lines, ln], key=lambda x: x.line_key)
    recompute(session, inv, lines)
    _record(session, inv, "add", lines.index(ln) + 1, (None, before), ln)
    return inv


def edit_line(
    session: Session,
    invoice_id: str,
    n: int,
    *,
    description: str | None = None,
    quantity: Decimal | None = None,
    unit_price: Decimal | None = None,
    tax_code: str | None = None,
) -> Invoice:
    """Change line ``n`` of a draft (1-based, as ``invoice show`` lists them); its amount
    becomes quantity times unit price, rounded once (a run's tiers and proration are
    replaced by the figures given)."""
    if description is None and quantity is None and unit_price is None and tax_code is None:
        raise BadInput("give what to change: --description, --quantity, --unit-price, --tax-code")
    inv, lines = _draft(session, invoice_id)
    ln = _pick(lines, n)
    old = _line_state(ln)
    before = _totals(inv)
    spec = check_line(
        LineSpec(
            ln.description if description is None else description.strip(),
            to_decimal(ln.quantity) if quantity is None else quantity,
            to_decimal(ln.unit_price) if unit_price is None else unit_price,
            tax_code or (ln.detail or {}).get("tax_code"),
        ),
        negative=True,
    )
    if tax_code:
        _rate_of(session, tax_code)
    detail = {k: v for k, v in (ln.detail or {}).items() if k != "tiers"}
    if spec.tax_code:
        detail["tax_code"] = spec.tax_code
    detail["edited"] = True
    ln.description, ln.quantity, ln.unit_price = (
        spec.description,
        str(spec.quantity),
        str(spec.unit_price),
    )
    ln.proration, ln.amount_minor, ln.detail = "1", _amount(spec, inv.currency), detail
    ln.touch()
    session.add(ln)
    recompute(session, inv, lines)
    _record(session, inv, "edit", n, (None, before), ln, old)
    return inv


def remove_line(session: Session, invoice_id: str, n: int) -> Invoice:
    """Remove line ``n`` of a draft."""
    inv, lines = _draft(session, invoice_id)
    ln = _pick(lines, n)
    before = (ln, _totals(inv))
    old = _line_state(ln)
    session.delete(ln)
    recompute(session, inv, [x for x in lines if x is not ln])
    _record(session, inv, "remove", n, before, None, old)
    return inv
