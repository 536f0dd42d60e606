"""``mno invoice explain``: an invoice's arithmetic as plain text, one line per rated
component, then subtotal, discounts, tax, credits and total.

Every number is shown in plain notation (``100``, never ``1E+2``); amounts carry the
currency's decimals, prices keep theirs (``0.002``). A line reads
``quantity x unit price [x proration] = amount``; a tiered line lists each tier below it.
The input is the invoice's view (``export.view``), so nothing here touches the store.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from mno.money import minor_units, plain, plain_price

# prices with more decimals than this are shown rounded, with a leading "~"
PRICE_PLACES = 8
PRORATION_PLACES = 4


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "None":
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _rounded(value: Any, places: int, at_least: int = 0) -> str:
    """Plain notation, rounded to ``places`` decimals with a ``~`` when that changed it."""
    d = _dec(value)
    if d is None:
        return str(value)
    q = d.quantize(Decimal(1).scaleb(-places)) if d.as_tuple().exponent != 0 else d
    mark = "~" if q != d else ""
    return mark + plain(q, at_least)


def price(value: Any, cur: str) -> str:
    """A unit price: plain, at least the currency's decimals, at most ``PRICE_PLACES``."""
    return _rounded(value, max(PRICE_PLACES, minor_units(cur)), minor_units(cur))


def qty(value: Any) -> str:
    """A quantity (or a percentage) in plain notation."""
    d = _dec(value)
    return plain(d) if d is not None else str(value)


def ratio(value: Any) -> str:
    """A proration factor, at most ``PRORATION_PLACES`` decimals."""
    return _rounded(value, PRORATION_PLACES)


def _tier_lines(detail: dict[str, Any], cur: str) -> list[str]:
    out = []
    tiers = detail.get("tiers") or []
    for n, tier in enumerate(tiers, 1):
        if not isinstance(tier, dict):
            out.append(f"   tier {n}: {tier}")
            continue
        if "from" in tier:  # graduated: this tier's slice at its own price
            units, each = _dec(tier.get("units")), _dec(tier.get("unit_price"))
            part = _dec(tier.get("amount"))
            flat = (
                part - units * each
                if part is not None and units is not None and each is not None
                else None
            )
            text = (
                f"   tier {n}: units {qty(tier['from'])} to {qty(tier.get('to'))},"
                f" {qty(tier.get('units'))} x {price(tier.get('unit_price'), cur)}"
            )
            if flat:
                text += f" + flat fee {price(flat, cur)}"
            out.append(f"{text} = {price(tier.get('amount'), cur)}")
        else:  # volume: every unit at the price of the tier the quantity lands in
            up = _dec(tier.get("up_to"))
            where = f"up to {qty(up)} units" if up is not None else "with no upper limit"
            out.append(
                f"   volume tier {where}: all {qty(tier.get('units'))} units"
                f" at {price(tier.get('unit_price'), cur)}"
            )
    return out


def _bundle_lines(detail: dict[str, Any], cur: str) -> list[str]:
    """The parts of a bundle line and how its price was reached."""
    if not detail.get("bundle"):
        return []
    out = [
        f"   part {p['plan']}: {plain_price(p['amount'], cur)} {cur}"
        for p in detail.get("parts", [])
    ]
    if detail.get("percent_off") is not None:
        out.append(
            f"   parts {plain_price(detail.get('parts_total') or 0, cur)} - "
            f"{_pct(detail['percent_off'])} off = "
            f"{plain_price(detail.get('full_amount') or 0, cur)} {cur} for the period"
        )
    else:
        out.append(
            f"   bundle price {plain_price(detail.get('price') or 0, cur)} {cur} for the period"
        )
    return out


def _detail_lines(detail: dict[str, Any]) -> list[str]:
    out = []
    if "used" in detail:  # a bucket of included units
        out.append(
            f"   used {qty(detail['used'])} of {qty(detail.get('available'))} available"
            f" ({qty(detail.get('included'))} included"
            f" + {qty(detail.get('rollover_in'))} rolled over);"
            f" {qty(detail.get('rollover_out'))} roll over to the next period"
        )
    if detail.get("tax_code"):
        out.append(f"   taxed at {detail['tax_code']}")
    if detail.get("edited"):
        out.append("   changed by hand")
    return out


def notes(ln: dict[str, Any], cur: str) -> list[str]:
    """A line's tiers and notes, for a printed invoice (no indentation)."""
    detail = ln.get("detail") or {}
    return [
        x.strip()
        for x in _tier_lines(detail, cur) + _bundle_lines(detail, cur) + _detail_lines(detail)
    ]


def unit_price(ln: dict[str, Any], cur: str) -> str:
    """A line's unit price as printed: ``tiered`` when its tiers say more than an average."""
    detail = ln.get("detail") or {}
    if detail.get("model") == "graduated" and detail.get("tiers"):
        return "tiered"
    return price(ln["unit_price"], cur)


def line_text(n: int, ln: dict[str, Any], cur: str) -> list[str]:
    """One line's arithmetic, then its tiers and notes."""
    detail = ln.get("detail") or {}
    model = detail.get("model")
    count, unit, amount = ln["quantity"], ln["unit_price"], ln["amount"]
    head = f"{n}. {ln['description'] or ln['kind']}: "
    if model == "graduated" and detail.get("tiers"):
        calc = f"{qty(count)} units in graduated tiers"
    elif model == "package" and _dec(detail.get("packages")):
        packages = _dec(detail["packages"])
        assert packages is not None
        each = (_dec(amount) or Decimal(0)) / packages
        calc = f"{qty(count)} units in {qty(packages)} packages x {price(each, cur)}"
    elif model == "time":
        per_hour = (_dec(unit) or Decimal(0)) * 60
        calc = f"{qty(count)} minutes at {price(per_hour, cur)} per hour"
    else:
        calc = f"{qty(count)} x {price(unit, cur)}"
        if model == "bucket":
            calc += " (overage)"
    proration = _dec(ln.get("proration"))
    if proration is not None and proration != 1:
        calc += f" x {ratio(proration)} (prorated)"
    out = [f"{head}{calc} = {plain_price(amount, cur)} {cur}"]
    return out + _tier_lines(detail, cur) + _bundle_lines(detail, cur) + _detail_lines(detail)


def _pct(value: Any) -> str:
    return f"{_rounded(value, 4)}%"


def tax_lines(data: dict[str, Any], tax_detail: dict[str, Any], cur: str) -> list[str]:
    """How the tax was found: the rate and its base, or why there is none."""
    tax = data["tax"]
    base = (_dec(data["subtotal"]) or Decimal(0)) - (_dec(data["discount"]) or Decimal(0))
    if tax_detail.get("treatment"):
        note = tax_detail.get("note") or tax_detail["treatment"]
        return [f"tax {plain_price(tax, cur)} {cur}: {note}"]
    if tax_detail.get("rates"):
        out = []
        for part in tax_detail["rates"]:
            how = "included in" if part.get("inclusive") else "on"
            out.append(
                f"tax {part.get('rate')} {_pct(part.get('percent'))} {how}"
                f" {plain_price(part.get('base', '0'), cur)}"
                f" = {plain_price(part.get('tax', '0'), cur)} {cur}"
            )
        return out
    if tax_detail.get("rate"):
        how = "included in" if tax_detail.get("inclusive") else "on"
        return [
            f"tax {tax_detail['rate']} {_pct(tax_detail.get('percent'))} {how}"
            f" {plain_price(base, cur)} = {plain_price(tax, cur)} {cur}"
        ]
    return [f"tax {plain_price(tax, cur)} {cur}"]


def explain(
    kind: str, data: dict[str, Any], lines: list[dict[str, Any]], tax_detail: dict[str, Any]
) -> str:
    """The whole explanation of one invoice or credit note (see the module doc)."""
    cur = data["currency"]
    number = data["number"] or f"{data['id']} (draft)"
    if kind == "credit_note":
        why = f" ({data['reason']})" if data.get("reason") else ""
        out = [
            f"credit note {number} for {data['credit_note_for']}{why}, tenant {data['tenant']},"
            f" {cur}: these amounts are taken away from it"
        ]
    else:
        period = f", period {data['period']}" if kind == "period" else ""
        out = [f"invoice {number}, tenant {data['tenant']}{period}, {cur}"]
    for n, ln in enumerate(lines, 1):
        out += line_text(n, ln, cur)
    out.append(f"subtotal {plain_price(data['subtotal'], cur)} {cur}")
    if _dec(data["discount"]):
        out.append(f"discounts {plain_price(data['discount'], cur)} {cur}")
    out += tax_lines(data, tax_detail, cur)
    if _dec(data["credit"]):
        out.append(f"prepaid credits {plain_price(data['credit'], cur)} {cur}")
    terms = [f"subtotal {plain_price(data['subtotal'], cur)}"]
    if _dec(data["discount"]):
        terms.append(f"- discounts {plain_price(data['discount'], cur)}")
    if tax_detail.get("rates"):  # several rates: only the exclusive ones are added
        parts = tax_detail["rates"]
        added = sum(
            (_dec(p.get("tax")) or Decimal(0) for p in parts if not p.get("inclusive")), Decimal(0)
        )
    else:
        added = Decimal(0) if tax_detail.get("inclusive") else _dec(data["tax"]) or Decimal(0)
    if added:
        terms.append(f"+ tax {plain_price(added, cur)}")
    if _dec(data["credit"]):
        terms.append(f"- credits {plain_price(data['credit'], cur)}")
    out.append(f"{' '.join(terms)} = total {plain_price(data['total'], cur)} {cur}")
    return "\n".join(out)
