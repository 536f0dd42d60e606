"""``kind: Metric | Plan | Coupon | TaxRate | Bundle``: the billing catalogue.

The spec models are the billing area's own (``mno.billing.documents``) and writes go
through its ``apply`` (a plan whose prices change gets a new version; subscriptions stay
pinned). ``metadata.name`` is the code. Prune deletes through ``mno.billing.catalogue``,
which refuses an object still in use (a plan with subscriptions, a metric a plan charges).

Store models and domain modules are imported inside the methods that use them: the registry
imports every adapter, and a command that touches one kind should not build every area's
tables.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno.billing import documents as billing_docs
from mno.billing.bundle_spec import BundleSpec
from mno.gitops.kinds.base import Kind
from mno.store.models.billing import BillingMetric, Coupon, Plan, TaxRate
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

_CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class BillingKind(Kind):
    def check_name(self, name: str) -> None:
        if not _CODE.match(name):
            raise ValueError(f"invalid code {name!r} (a-z, 0-9, '_', '.', '-')")

    def _rows(self, session: Session) -> list[Any]:
        raise NotImplementedError

    def _raw(self, row: Any) -> dict[str, Any]:
        raise NotImplementedError

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        model = self.spec_model
        return {
            row.code: model.model_validate(self._raw(row)).model_dump(mode="json")
            for row in self._rows(session)
        }

    def _apply(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        doc = billing_docs.Document.model_validate(
            {"kind": self.kind, "metadata": {"name": name}, "spec": spec}
        )
        typed = doc.typed_spec()
        if self.kind == "Plan":
            billing_docs._check_plan(typed)
        billing_docs.apply(session, doc, typed)

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> str | None:
        self._apply(session, name, spec)
        return None

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> str | None:
        current = self.current(session)[name]
        self._apply(session, name, current | changes)
        return None

    def delete(self, session: Session, name: str) -> None:
        from mno.billing import catalogue

        catalogue.delete(session, self.kind, name)


def _select(session: Session, model: Any, *where: Any) -> list[Any]:
    return list(session.execute(sa.select(table_of(model)).where(*where)))


class MetricKind(BillingKind):
    kind = "Metric"
    plural = "metrics"
    spec_model = billing_docs.MetricSpec
    description = "A billable metric: how usage events aggregate (sum, count, max, ...)."

    def _rows(self, session: Session) -> list[Any]:
        return _select(session, BillingMetric)

    def _raw(self, row: Any) -> dict[str, Any]:
        name = "" if row.name == row.code else row.name
        return {"aggregation": row.aggregation, "field": row.field, "name": name}


class PlanKind(BillingKind):
    kind = "Plan"
    plural = "plans"
    spec_model = billing_docs.PlanSpec
    description = "A price plan (its current version): currency, interval, trial, charges."
    depends_on = ("Metric",)

    def refs(self, name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
        return [("Metric", c["metric"]) for c in spec.get("charges") or [] if c.get("metric")]

    def _rows(self, session: Session) -> list[Any]:
        return _select(session, Plan, Plan.current == True)  # noqa: E712

    def _raw(self, row: Any) -> dict[str, Any]:
        return {
            "name": "" if row.name == row.code else row.name,
            "currency": row.currency,
            "interval": {"unit": row.interval_unit, "every": row.interval_every},
            "trial_days": row.trial_days,
            "setup_fee": row.setup_fee,
            "charges": list(row.charges or []),
        }


class CouponKind(BillingKind):
    kind = "Coupon"
    plural = "coupons"
    spec_model = billing_docs.CouponSpec
    description = "A coupon: percentage or fixed, once, repeating or forever."

    def _rows(self, session: Session) -> list[Any]:
        return _select(session, Coupon)

    def _raw(self, row: Any) -> dict[str, Any]:
        return {
            "kind": row.kind,
            "value": row.value,
            "currency": row.currency,
            "duration": row.duration,
            "periods": row.periods,
        }


class TaxRateKind(BillingKind):
    kind = "TaxRate"
    plural = "tax-rates"
    spec_model = billing_docs.TaxRateSpec
    description = "A tax rate by country (and region), inclusive or exclusive."

    def _rows(self, session: Session) -> list[Any]:
        return _select(session, TaxRate)

    def _raw(self, row: Any) -> dict[str, Any]:
        return {
            "country": row.country,
            "region": row.region,
            "rate": row.rate,
            "inclusive": bool(row.inclusive),
        }


class BundleKind(BillingKind):
    """Bundles: plans and apps sold as one product. Prune archives a bundle (no new
    subscriptions; those running carry on) instead of deleting it."""

    kind = "Bundle"
    plural = "bundles"
    spec_model = BundleSpec
    description = "A bundle: plans and apps sold as one, at a price or a percentage off."
    depends_on = ("Plan", "App")

    def refs(self, name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
        return [("Plan", p) for p in spec.get("plans") or []] + [
            ("App", a) for a in spec.get("apps") or []
        ]

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        from mno.billing import bundles

        return {b.code: bundles.spec_of(b) for b in bundles.list_bundles(session)}

    def _apply(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        from mno.billing import bundles

        bundles.apply(session, name, bundles.parse_spec(spec))

    def delete(self, session: Session, name: str) -> None:
        from mno.billing import bundles

        bundles.archive(session, name)
