from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

CATALOGUE = """
kind: Metric
metadata: {name: api_calls}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: pro}
spec:
  currency: EUR
  interval: {unit: month, every: 1}
  charges:
    - {kind: fixed, amount: "49.00", timing: advance}
    - kind: usage
      metric: api_calls
      model: graduated
      tiers:
        - {up_to: 1000, unit_price: "0"}
        - {up_to: 10000, unit_price: "0.002"}
        - {up_to: null, unit_price: "0.001"}
---
kind: TaxRate
metadata: {name: fr-vat}
spec: {country: FR, rate: "20", inclusive: false}
---
kind: Coupon
metadata: {name: half}
spec: {kind: percentage, value: "50", duration: once}
"""


@pytest.fixture
def catalogue(session: Callable[..., AbstractContextManager[Any]]) -> None:
    from mno.billing import documents

    with session() as s:
        documents.apply_text(s, CATALOGUE)
