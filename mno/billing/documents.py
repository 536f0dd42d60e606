"""YAML documents for the catalogue (Metric, Plan, Coupon, TaxRate) and ``apply``.

The shape is ``kind/metadata/spec``; GitOps reuses these models and ``apply`` (create or
update; a plan whose prices change gets a new version, subscriptions stay pinned). Each
create or update writes its audit row and its ``<kind>.created`` or ``<kind>.updated``
event (``plan.updated`` for a new version) in the caller's transaction; applying what is
already there writes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlmodel import Session, select

from mno import safeyaml, validate
from mno.billing import rating
from mno.billing.periods import MAX_EVERY
from mno.errors import BadInput
from mno.money import check_currency, to_decimal
from mno.store import audit, outbox
from mno.store.models.billing import BillingMetric, Coupon, Plan, TaxRate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metadata(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    description: str = ""


class MetricSpec(_Strict):
    aggregation: Literal["sum", "count", "max", "unique_count", "latest"] = "sum"
    field: str | None = None
    name: str = ""


class Interval(_Strict):
    unit: Literal["day", "week", "semimonth", "month", "quarter", "year"] = "month"
    every: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _at_most_a_year(self) -> Interval:
        if self.every > MAX_EVERY[self.unit]:
            raise ValueError(
                f"every {self.every} {self.unit}: at most {MAX_EVERY[self.unit]} (a year)"
            )
        return self


class Tier(_Strict):
    up_to: Decimal | None = None
    unit_price: Decimal = Decimal(0)
    flat_fee: Decimal = Decimal(0)


class ChargeSpec(_Strict):
    kind: Literal["fixed", "usage", "time", "bucket"]
    amount: Decimal | None = None
    timing: Literal["advance", "arrears"] = "advance"
    metric: str | None = None
    # default: the metric's own aggregation
    aggregation: Literal["sum", "count", "max", "unique_count", "latest"] | None = None
    model: Literal["per_unit", "graduated", "volume", "package"] = "per_unit"
    unit_price: Decimal | None = None
    tiers: list[Tier] = []
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    free_units: Decimal = Decimal(0)
    rate: Decimal | None = None  # time: price per hour
    minimum: Decimal = Decimal(0)
    round_up_to: Decimal = Decimal(1)
    included: Decimal = Decimal(0)
    rollover_cap: Decimal = Decimal(0)
    overage_price: Decimal = Decimal(0)

    @field_validator("*", mode="before")
    @classmethod
    def _no_float(cls, v: Any) -> Any:
        if isinstance(v, float):
            raise ValueError("give amounts as strings, not floats")
        return v


class PlanSpec(_Strict):
    name: str = ""
    currency: str
    interval: Interval = Interval()
    trial_days: int = Field(default=0, ge=0, le=365)
    setup_fee: Decimal = Decimal(0)
    charges: list[ChargeSpec] = []

    @field_validator("currency")
    @classmethod
    def _cur(cls, v: str) -> str:
        return check_currency(v)


class CouponSpec(_Strict):
    kind: Literal["percentage", "fixed"] = "percentage"
    value: Decimal
    currency: str | None = None
    duration: Literal["once", "repeating", "forever"] = "once"
    periods: int | None = None


class TaxRateSpec(_Strict):
    country: str = Field(pattern=r"^[A-Z]{2}$")
    region: str | None = None
    rate: Decimal = Field(ge=0, le=100)
    inclusive: bool = False

    @field_validator("country")
    @classmethod
    def _country(cls, v: str) -> str:
        try:
            code = validate.country(v)
        except BadInput as exc:
            raise ValueError(str(exc)) from None
        return code or v


SPECS: dict[str, type[BaseModel]] = {
    "Metric": MetricSpec,
    "Plan": PlanSpec,
    "Coupon": CouponSpec,
    "TaxRate": TaxRateSpec,
}


class Document(_Strict):
    kind: Literal["Metric", "Plan", "Coupon", "TaxRate"]
    metadata: Metadata
    spec: dict[str, Any]

    def typed_spec(self) -> Any:
        return SPECS[self.kind].model_validate(self.spec)


def parse(text: str, source: str = "<input>") -> list[tuple[Document, Any]]:
    """Validate every document in a YAML stream; BadInput names the document and field."""
    out = []
    try:
        docs = [d for d in safeyaml.safe_load_all(text, source) if d is not None]
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}: not YAML ({exc})") from exc
    for n, raw in enumerate(docs, 1):
        try:
            doc = Document.model_validate(raw)
            spec = doc.typed_spec()
            if doc.kind == "Plan":
                _check_plan(spec)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise BadInput(f"{source}: document {n}: {loc}: {err['msg']}") from exc
        except BadInput as exc:
            raise BadInput(f"{source}: document {n}: {exc}") from exc
        out.append((doc, spec))
    return out


def _check_plan(spec: PlanSpec) -> None:
    for i, c in enumerate(spec.charges):
        if c.kind == "fixed" and c.amount is None:
            raise BadInput(f"charges.{i}: fixed needs amount")
        if c.kind in ("usage", "time", "bucket") and not c.metric:
            raise BadInput(f"charges.{i}: {c.kind} needs metric")
        if c.kind == "usage" and c.model in ("graduated", "volume"):
            rating._tiers([t.model_dump(mode="json") for t in c.tiers])


def _charges_json(spec: PlanSpec) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude_none=True) for c in spec.charges]


def apply(session: Session, doc: Document, spec: Any | None = None) -> tuple[str, Any]:
    """Create or update the object; returns ("created"|"updated"|"unchanged"|"versioned", obj)."""
    spec = spec if spec is not None else doc.typed_spec()
    name = doc.metadata.name
    if doc.kind == "Metric":
        m = session.exec(select(BillingMetric).where(BillingMetric.code == name)).first()
        values = {"aggregation": spec.aggregation, "field": spec.field, "name": spec.name or name}
        return _upsert(session, BillingMetric, m, name, values, "metric")
    if doc.kind == "TaxRate":
        t = session.exec(select(TaxRate).where(TaxRate.code == name)).first()
        values = {
            "country": spec.country,
            "region": spec.region,
            "rate": str(spec.rate),
            "inclusive": spec.inclusive,
        }
        return _upsert(session, TaxRate, t, name, values, "tax_rate")
    if doc.kind == "Coupon":
        c = session.exec(select(Coupon).where(Coupon.code == name)).first()
        values = {
            "kind": spec.kind,
            "value": str(to_decimal(spec.value)),
            "currency": spec.currency,
            "duration": spec.duration,
            "periods": spec.periods,
        }
        return _upsert(session, Coupon, c, name, values, "coupon")
    current = session.exec(
        select(Plan).where(Plan.code == name, Plan.current == True)  # noqa: E712
    ).first()
    values = {
        "name": spec.name or name,
        "currency": spec.currency,
        "interval_unit": spec.interval.unit,
        "interval_every": spec.interval.every,
        "trial_days": spec.trial_days,
        "setup_fee": str(spec.setup_fee),
        "charges": _charges_json(spec),
    }
    if current is None:
        plan = Plan(code=name, version=1, **values)
        session.add(plan)
        session.flush()
        audit.record(
            session,
            "plan.create",
            target_type="plan",
            target_id=plan.id,
            target=name,
            after=audit.snapshot(plan),
        )
        outbox.emit(session, "plan.created", _plan_payload(plan))
        return "created", plan
    if all(getattr(current, k) == v for k, v in values.items()):
        return "unchanged", current
    current.current = False
    session.add(current)
    session.flush()
    plan = Plan(code=name, version=current.version + 1, **values)
    session.add(plan)
    session.flush()
    audit.record(
        session,
        "plan.version",
        target_type="plan",
        target_id=plan.id,
        target=name,
        before=audit.snapshot(current),
        after=audit.snapshot(plan),
    )
    outbox.emit(session, "plan.updated", _plan_payload(plan) | {"from_version": current.version})
    return "versioned", plan


def _plan_payload(plan: Plan) -> dict[str, Any]:
    """A plan version as its ``plan.*`` events carry it."""
    return {
        "code": plan.code,
        "version": plan.version,
        "currency": plan.currency,
        "interval": {"unit": plan.interval_unit, "every": plan.interval_every},
    }


def _upsert(
    session: Session, model: Any, obj: Any, name: str, values: dict[str, Any], what: str
) -> tuple[str, Any]:
    if obj is None:
        obj = model(code=name, **values)
        session.add(obj)
        session.flush()
        audit.record(
            session,
            f"{what}.create",
            target_type=what,
            target_id=obj.id,
            target=name,
            after=audit.snapshot(obj),
        )
        outbox.emit(session, f"{what}.created", {"code": name, **values})
        return "created", obj
    if all(getattr(obj, k) == v for k, v in values.items()):
        return "unchanged", obj
    before = audit.snapshot(obj)
    for k, v in values.items():
        setattr(obj, k, v)
    obj.touch()
    session.add(obj)
    audit.record(
        session,
        f"{what}.update",
        target_type=what,
        target_id=obj.id,
        target=name,
        before=before,
        after=audit.snapshot(obj),
    )
    outbox.emit(session, f"{what}.updated", {"code": name, **values})
    return "updated", obj


def apply_text(session: Session, text: str, source: str = "<input>") -> list[tuple[str, str, str]]:
    """Validate the whole stream, then apply each document: [(kind, name, outcome)]."""
    parsed = parse(text, source)
    return [(d.kind, d.metadata.name, apply(session, d, s)[0]) for d, s in parsed]
