"""Tax treatments of tenants: exempt, or under reverse charge, in a country and optionally
one region of it.

A billing run looks up the tenant's tax rate by its address (country and region, then the
country alone) and its treatment the same way. A treated tenant's invoices carry no tax
amount and a note instead (``tax_detail.note``): "Exempt from tax" or "Reverse charge: the
customer accounts for the tax", with the tenant's tax id when one is known.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from mno import validate
from mno.errors import BadInput, NotFound
from mno.store import audit, outbox
from mno.store.models.billing import TaxTreatment
from mno.tenancy import tenants

TREATMENTS = ("exempt", "reverse_charge")


def _country(value: str) -> str:
    code = validate.country(value)
    if code is None:
        raise BadInput("a country is required", "use an ISO 3166-1 alpha-2 code such as FR")
    return code


def _payload(row: TaxTreatment, key: str) -> dict[str, Any]:
    return {
        "tenant": key,
        "country": row.country,
        "region": row.region or None,
        "treatment": row.treatment,
        "tax_id": row.tax_id,
    }


def set_treatment(
    session: Session,
    tenant_key: str,
    country: str,
    treatment: str,
    *,
    region: str | None = None,
    tax_id: str | None = None,
    note: str | None = None,
) -> TaxTreatment:
    """Create or replace the tenant's treatment for ``country`` (and ``region``)."""
    if treatment not in TREATMENTS:
        raise BadInput(f"treatment {treatment!r}: use exempt or reverse_charge")
    t = tenants.get(session, tenant_key)
    cc, reg = _country(country), (region or "").strip()
    row = session.exec(
        select(TaxTreatment).where(
            TaxTreatment.tenant_id == t.id, TaxTreatment.country == cc, TaxTreatment.region == reg
        )
    ).first()
    before = audit.snapshot(row) if row else None
    if row is None:
        row = TaxTreatment(tenant_id=t.id, country=cc, region=reg, treatment=treatment)
    row.treatment, row.tax_id, row.note = treatment, tax_id, note
    row.touch()
    session.add(row)
    session.flush()
    audit.record(
        session,
        "tax_treatment.set",
        target_type="tenant",
        target_id=t.id,
        target=t.key,
        before=before,
        after=audit.snapshot(row),
        tenant_id=t.id,
    )
    outbox.emit(session, "tax_treatment.set", _payload(row, t.key), t.id)
    return row


def remove_treatment(
    session: Session, tenant_key: str, country: str, region: str | None = None
) -> None:
    """Tax the tenant normally again in ``country`` (and ``region``)."""
    t = tenants.get(session, tenant_key)
    cc, reg = _country(country), (region or "").strip()
    row = session.exec(
        select(TaxTreatment).where(
            TaxTreatment.tenant_id == t.id, TaxTreatment.country == cc, TaxTreatment.region == reg
        )
    ).first()
    if row is None:
        raise NotFound(f"tenant {t.key} has no tax treatment for {cc}{'/' + reg if reg else ''}")
    payload = _payload(row, t.key)
    audit.record(
        session,
        "tax_treatment.remove",
        target_type="tenant",
        target_id=t.id,
        target=t.key,
        before=audit.snapshot(row),
        tenant_id=t.id,
    )
    session.delete(row)
    outbox.emit(session, "tax_treatment.removed", payload, t.id)


def list_treatments(session: Session, tenant_key: str | None = None) -> list[TaxTreatment]:
    q = select(TaxTreatment).order_by(TaxTreatment.country, TaxTreatment.region)
    if tenant_key:
        q = q.where(TaxTreatment.tenant_id == tenants.get(session, tenant_key).id)
    return list(session.exec(q))
