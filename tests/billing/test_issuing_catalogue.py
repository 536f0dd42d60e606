"""``issuing.issue_drafts`` (``mno billing run --issue``) and the catalogue's list/get."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest

from mno import clock
from mno.billing import catalogue as billing_catalogue
from mno.billing import invoices, issuing, subscriptions
from mno.billing import run as billing
from mno.errors import NotFound
from mno.tenancy import tenants

Opener = Callable[..., AbstractContextManager[Any]]


def test_issue_drafts_issues_each_draft_once(
    store_url: str, session: Opener, catalogue: None
) -> None:
    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    with session() as s:
        for key in ("acme", "kiwi"):
            tenants.create(s, key)
            subscriptions.create(s, key, "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    result = billing.run("2026-10", url=store_url)
    assert result.run_id and result.invoices == 2
    issued = issuing.issue_drafts(result.run_id, url=store_url)
    assert len(issued) == 2
    with session(write=False) as s:
        numbers = sorted(invoices.get(s, i).number or "" for i in issued)
        assert numbers == ["INV-2026-000001", "INV-2026-000002"]
    assert issuing.issue_drafts(result.run_id, url=store_url) == []


def test_catalogue_list_and_get(session: Opener, catalogue: None) -> None:
    with session(write=False) as s:
        assert [p.code for p in billing_catalogue.list_objects(s, "Plan")] == ["pro"]
        assert billing_catalogue.get(s, "Metric", "api_calls").aggregation == "sum"
        with pytest.raises(NotFound, match="taxrate 'nope' not found"):
            billing_catalogue.get(s, "TaxRate", "nope")
