"""Forty concurrent wrong guesses on PostgreSQL never get more than the allowed attempts;
/readyz, /metrics and ``mno serve --workers``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.onboarding.conftest import LEAD, Hub


def test_concurrent_wrong_guesses_are_counted_one_by_one(hub_at: Any, pg_url: str) -> None:
    import sqlalchemy as sa

    from mno.store import db
    from mno.tenancy import leads

    hub: Hub = hub_at(pg_url)
    creds = hub.frontend("shop")
    lead = hub.call("POST", "/v1/onboarding/leads", json=LEAD, headers=creds).json()
    code = hub.code_for(LEAD["email"])
    path = f"{hub.url}/v1/onboarding/leads/{lead['id']}/verify"

    async def guess_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(client.post(path, json={"code": f"wrong-{i}"}, headers=creds) for i in range(40))
            )

    answers = asyncio.run(guess_all())
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {422: leads.MAX_ATTEMPTS - 1, 409: 40 - (leads.MAX_ATTEMPTS - 1)}
    with db.get_engine(pg_url).connect() as conn:
        row = conn.execute(
            sa.text("SELECT status, failed_attempts FROM lead WHERE id = :id"), {"id": lead["id"]}
        ).one()
        failed = conn.execute(
            sa.text("SELECT count(*) FROM audit_entry WHERE action = 'lead.verify_failed'")
        ).scalar_one()
    assert tuple(row) == ("locked", leads.MAX_ATTEMPTS)
    assert failed == leads.MAX_ATTEMPTS
    late = hub.call(
        "POST", f"/v1/onboarding/leads/{lead['id']}/verify", json={"code": code}, headers=creds
    )
    assert late.status_code == 409
    assert all(code not in a.text for a in answers)


def test_readyz_and_metrics(hub_sqlite: Hub, monkeypatch: Any) -> None:
    hub = hub_sqlite
    ready = hub.call("GET", "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    hub.call("GET", "/v1/onboarding/tenants/nope/provisioning", headers=hub.frontend("shop"))
    metrics = hub.call("GET", "/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'mno_http_requests_total{method="GET",route="/readyz",status="200"}' in text
    assert (
        'route="/v1/onboarding/tenants/{tenant_id}/provisioning",status="404"' in text
    )  # by route template, not by path
    assert "mno_http_request_duration_seconds_bucket" in text

    # the same API on a store that cannot be reached is alive but not ready
    from mno import settings
    from tests.onboarding.conftest import start_api

    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    monkeypatch.setenv("MNO_DB_URL", unreachable)
    settings.configure(db_url=unreachable)  # as `mno --db URL serve` would
    srv, url = start_api()
    try:
        assert httpx.get(url + "/healthz", timeout=20).status_code == 200
        down = httpx.get(url + "/readyz", timeout=20)
        assert down.status_code == 503, down.text
        assert down.headers["content-type"] == "application/problem+json"
        assert down.json()["status"] == 503
    finally:
        srv.should_exit = True


def test_serve_with_workers_answers_and_stops_gracefully(
    sqlite_url: str, mno_env: Path, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MNO_DB_URL": sqlite_url, "MNO_HOME": str(mno_env)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        up = False
        for _ in range(600):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                if answer.status_code == 200:
                    up = True
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            asyncio.run(asyncio.sleep(0.05))
        assert up, (tmp_path / "serve.log").read_text()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_concurrent_conversions_make_one_tenant(hub_at: Any, pg_url: str) -> None:
    import sqlalchemy as sa

    from mno.store import db

    hub: Hub = hub_at(pg_url)
    creds = hub.frontend("shop", "isolated")
    lead = hub.call("POST", "/v1/onboarding/leads", json=LEAD, headers=creds).json()
    code = hub.code_for(LEAD["email"])
    token = hub.call(
        "POST", f"/v1/onboarding/leads/{lead['id']}/verify", json={"code": code}, headers=creds
    ).json()["token"]
    path = f"{hub.url}/v1/onboarding/leads/{lead['id']}/tenants"

    async def convert_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        path,
                        json={"key": f"analytical-{i}", "domains": ["analytical.io"]},
                        headers=creds | {"X-Lead-Token": token},
                    )
                    for i in range(10)
                )
            )

    answers = asyncio.run(convert_all())
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 403: 9}, [a.text for a in answers]
    with db.get_engine(pg_url).connect() as conn:
        tenants = conn.execute(
            sa.text("SELECT count(*) FROM tenant WHERE key LIKE 'analytical-%'")
        ).scalar_one()
    assert tenants == 1
