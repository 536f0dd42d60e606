"""Webhook KPIs against values computed by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from mno.reports import kpis
from mno.reports.model import Window
from mno.store.models.webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint

T0 = datetime(2026, 11, 10, 12, tzinfo=UTC)


def seed(session) -> None:
    with session() as s:
        live = WebhookEndpoint(url="https://a.example.com/hook", secret_enc="x")
        off = WebhookEndpoint(url="https://b.example.com/hook", secret_enc="x", enabled=False)
        s.add_all([live, off])
        s.flush()
        # 8 deliveries in November: 6 succeeded (1..6 s after the event), 1 exhausted,
        # 1 pending; and 1 succeeded delivery in October
        specs = [("succeeded", i) for i in range(1, 7)] + [("exhausted", None), ("pending", None)]
        for n, (status, after) in enumerate(specs):
            d = WebhookDelivery(
                target_id=live.id,
                event_id=uuid.uuid4(),
                seq=n + 1,
                event_type="tenant.created",
                event_at=T0,
                body="{}",
                status=status,
                created_at=T0,
                updated_at=T0,
                done_at=T0 + timedelta(seconds=after) if after else None,
            )
            s.add(d)
            s.flush()
            # attempts: 10, 20, ... ms; the exhausted delivery had two 500s
            codes = [500, 500] if status == "exhausted" else [200 if status == "succeeded" else 503]
            for code in codes:
                s.add(
                    WebhookAttempt(
                        delivery_id=d.id, at=T0, status_code=code, latency_ms=10.0 * (n + 1)
                    )
                )
        old = datetime(2026, 10, 3, tzinfo=UTC)
        s.add(
            WebhookDelivery(
                target_id=live.id,
                event_id=uuid.uuid4(),
                seq=99,
                event_type="tenant.created",
                event_at=old,
                body="{}",
                status="succeeded",
                created_at=old,
                updated_at=old,
                done_at=old + timedelta(seconds=30),
            )
        )


def test_webhook_kpis_by_hand(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.webhooks_report(s, Window.ending("2026-11", 1))
    m = report.metrics
    assert m["deliveries"] == 8
    assert m["success_rate_pct"] == round(6 / 7 * 100, 2)  # of the finished ones
    # attempts: 6 × 200, 2 × 500, 1 × 503 → 6 of 9
    assert m["attempt_success_pct"] == round(6 / 9 * 100, 2)
    # attempt latencies 10,20,30,40,50,60,70,70,80 ms: nearest rank p50 = 5th, p95 = 9th
    assert (m["attempt_latency_ms_p50"], m["attempt_latency_ms_p95"]) == (50.0, 80.0)
    # delivery latency of the succeeded: 1..6 s → p50 = 3rd (3 s), p95 = 6th (6 s)
    assert (m["delivery_latency_s_p50"], m["delivery_latency_s_p95"]) == (3.0, 6.0)
    assert (m["exhausted"], m["pending"]) == (1, 1)
    assert (m["endpoints"], m["disabled_endpoints"]) == (2, 1)
    with session(write=False) as s:
        two = kpis.webhooks_report(s, Window.ending("2026-11", 2))
    assert two.tables["monthly"] == [
        {"month": "2026-10", "succeeded": 1, "exhausted": 0},
        {"month": "2026-11", "succeeded": 6, "exhausted": 1},
    ]
