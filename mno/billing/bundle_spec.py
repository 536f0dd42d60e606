"""A bundle's document (``kind: Bundle``): the spec model and the YAML parser.

Kept apart from ``mno.billing.bundles`` so that GitOps can read the model without loading
the billing domain.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mno.billing.documents import Interval
from mno.errors import BadInput
from mno.money import check_currency

CODE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class BundleSpec(BaseModel):
    """A bundle's document spec (``kind: Bundle``; ``metadata.name`` is its code)."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    currency: str
    interval: Interval = Interval()
    price: Decimal | None = Field(default=None, ge=0)
    percent_off: Decimal | None = Field(default=None, gt=0, le=100)
    plans: list[str] = []
    apps: list[str] = []

    @field_validator("price", "percent_off", mode="before")
    @classmethod
    def _no_float(cls, v: Any) -> Any:
        if isinstance(v, float):
            raise ValueError("give amounts as strings, not floats")
        return v

    @field_validator("currency")
    @classmethod
    def _cur(cls, v: str) -> str:
        try:
            return check_currency(v)
        except BadInput as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _pricing(self) -> BundleSpec:
        if (self.price is None) == (self.percent_off is None):
            raise ValueError("give either price or percent_off")
        if not self.plans:
            raise ValueError("a bundle needs at least one plan")
        for what, codes in (("plans", self.plans), ("apps", self.apps)):
            if len(set(codes)) != len(codes):
                raise ValueError(f"{what}: a code is listed twice")
        return self


def parse_spec(data: dict[str, Any]) -> BundleSpec:
    """The spec from plain data; BadInput names the field."""
    try:
        return BundleSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise BadInput(f"{loc + ': ' if loc else ''}{msg}") from exc


def parse_documents(text: str, source: str = "<input>") -> list[tuple[str, BundleSpec]]:
    """``kind: Bundle`` documents of a YAML stream, validated: [(code, spec)]."""
    import yaml

    from mno import safeyaml

    try:
        docs = [d for d in safeyaml.safe_load_all(text, source) if d is not None]
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}: not YAML ({exc})") from exc
    out = []
    for n, raw in enumerate(docs, 1):
        if not isinstance(raw, dict) or raw.get("kind") != "Bundle":
            found = raw.get("kind") if isinstance(raw, dict) else type(raw).__name__
            raise BadInput(f"{source}: document {n}: expected kind Bundle, found {found}")
        extra = set(raw) - {"apiVersion", "kind", "metadata", "spec"}
        if extra:
            raise BadInput(f"{source}: document {n}: unknown field {sorted(extra)[0]}")
        name = (raw.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not re.match(CODE, name):
            raise BadInput(f"{source}: document {n}: metadata.name: a bundle code (a-z, 0-9)")
        try:
            spec = parse_spec(raw.get("spec") or {})
        except BadInput as exc:
            raise BadInput(f"{source}: document {n}: spec.{exc}") from exc
        out.append((name, spec))
    return out
