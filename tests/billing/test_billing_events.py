"""Catalogue writes (metrics, plans, coupons, tax rates) and ledger credits emit outbox
events from the catalogue, in the write's transaction, and webhooks receive them."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock, events
from mno.billing import catalogue, documents, ledger
from mno.store.models.core import Event
from mno.store.models.webhooks import WebhookDelivery
from mno.tenancy import tenants
from mno.webhooks import endpoints, fanout
from tests.billing.conftest import CATALOGUE

Opener = Callable[..., AbstractContextManager[Any]]

CHANGED = (
    CATALOGUE.replace('"49.00"', '"59.00"')
    .replace('rate: "20"', 'rate: "21"')
    .replace('value: "50"', 'value: "40"')
)


def _events(session: Opener, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
    with session(write=False) as s:
        rows = s.execute(
            sa.select(Event.seq, Event.type, Event.payload)
            .where(Event.seq > after)
            .order_by(Event.seq)
        )
        return [(int(seq), t, p) for seq, t, p in rows]


def test_catalogue_writes_emit_events(session: Opener) -> None:
    with session() as s:
        documents.apply_text(s, CATALOGUE)
    created = _events(session)
    assert [t for _, t, _ in created] == [
        "metric.created",
        "plan.created",
        "tax_rate.created",
        "coupon.created",
    ]
    payloads = {t: p for _, t, p in created}
    assert payloads["plan.created"] == {
        "code": "pro",
        "version": 1,
        "currency": "EUR",
        "interval": {"unit": "month", "every": 1},
    }
    assert payloads["tax_rate.created"]["code"] == "fr-vat"
    assert payloads["tax_rate.created"]["rate"] == "20"
    assert payloads["coupon.created"]["value"] == "50"
    last = created[-1][0]
    # applying the same documents again changes nothing and says nothing
    with session() as s:
        documents.apply_text(s, CATALOGUE)
    assert _events(session, last) == []
    with session() as s:
        documents.apply_text(s, CHANGED)
    updated = _events(session, last)
    assert [t for _, t, _ in updated] == ["plan.updated", "tax_rate.updated", "coupon.updated"]
    by_type = {t: p for _, t, p in updated}
    assert by_type["plan.updated"]["version"] == 2
    assert by_type["plan.updated"]["from_version"] == 1
    assert by_type["tax_rate.updated"]["rate"] == "21"
    assert by_type["coupon.updated"]["value"] == "40"
    last = updated[-1][0]
    with session() as s:
        catalogue.delete_coupon(s, "half")
    assert [t for _, t, _ in _events(session, last)] == ["coupon.deleted"]
    assert all(events.is_known(t) for _, t, _ in _events(session))


def test_a_credit_emits_credit_added(session: Opener) -> None:
    clock.set_now(datetime(2026, 11, 1, tzinfo=UTC))
    with session() as s:
        tenants.create(s, "acme")
        ledger.add_credit(
            s,
            "acme",
            2500,
            "EUR",
            reference="goodwill",
            expires_at=datetime(2027, 1, 1, tzinfo=UTC),
        )
    (added,) = [e for e in _events(session) if e[1] == "credit.added"]
    payload = added[2]
    assert payload["tenant"] == "acme" and payload["amount_minor"] == 2500
    assert payload["currency"] == "EUR" and payload["reference"] == "goodwill"
    assert payload["expires_at"] == "2027-01-01T00:00:00Z"
    assert events.is_known("credit.added")


def test_webhooks_receive_catalogue_and_credit_events(
    session: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MNO_MASTER_KEY", Fernet.generate_key().decode())
    with session() as s:
        endpoints.add(
            s,
            "https://hooks.example.com/billing",
            events="plan.*,coupon.*,tax_rate.*,metric.*,credit.*",
        )
    with session() as s:
        fanout.fan_out(s)
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        documents.apply_text(s, CHANGED)
        tenants.create(s, "acme")
        ledger.add_credit(s, "acme", 100, "EUR")
        catalogue.delete_tax_rate(s, "fr-vat")
    with session() as s:
        fanout.fan_out(s)
    with session(write=False) as s:
        delivered = s.execute(
            sa.select(WebhookDelivery.event_type).order_by(WebhookDelivery.seq)
        ).scalars()
        assert list(delivered) == [
            "metric.created",
            "plan.created",
            "tax_rate.created",
            "coupon.created",
            "plan.updated",
            "tax_rate.updated",
            "coupon.updated",
            "credit.added",
            "tax_rate.deleted",
        ]
