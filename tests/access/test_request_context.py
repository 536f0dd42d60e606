"""Request ids and RateLimit headers on a real server (uvicorn on 127.0.0.1): the id is
the client's sane X-Request-Id or a new one, echoed in the header, the problem body and
the log line; rate-limited answers carry RateLimit-Limit/Remaining/Reset from the key's
token bucket, and a 429 keeps Retry-After. SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from tests.access.conftest import basic

RATE = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def test_a_sane_request_id_is_echoed_and_written_in_problems_and_logs(api, caplog) -> None:
    caplog.set_level(logging.INFO, logger="mno.api")
    rid = "req-7f3a.b:c_1"
    r = httpx.get(f"{api}/v1/dev/customers", headers={"X-Request-Id": rid})
    assert r.status_code == 401
    assert r.headers["x-request-id"] == rid
    assert r.json()["request_id"] == rid
    assert not any(h in r.headers for h in RATE)  # refused before any bucket is spent
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "mno.api"]
    assert any(f"request_id={rid}" in line and " 401 " in line for line in lines), lines


@pytest.mark.parametrize("given", [None, "x" * 65, "two words", "ünïcode", "<script>"])
def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(api, given) -> None:
    headers = {} if given is None else {"X-Request-Id": given.encode()}
    r = httpx.get(f"{api}/v1/no/such/path", headers=headers)
    assert r.status_code == 404
    rid = r.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert r.json()["request_id"] == rid
    again = httpx.get(f"{api}/v1/no/such/path", headers=headers)
    assert again.headers["x-request-id"] != rid  # one id per request


def test_rate_limited_answers_carry_the_bucket_and_429_keeps_retry_after(
    api, api_profile, app_key, acme
) -> None:
    from mno.api import auth, config

    api_profile(api={"rate_limit": 0.01, "rate_burst": 3})  # no refill within the test
    config.reset()
    auth.clear()
    h = basic(app_key["key_id"], app_key["secret"])
    seen = []
    for _ in range(3):
        r = httpx.get(f"{api}/v1/dev/customers", headers=h)
        assert r.status_code == 200, r.text
        assert r.headers["ratelimit-limit"] == "3"
        remaining = int(r.headers["ratelimit-remaining"])
        reset = int(r.headers["ratelimit-reset"])
        assert 0 <= remaining <= 2
        assert reset >= 100 * (3 - remaining) - 1  # 0.01/s: 100 s a request
        seen.append(remaining)
    assert seen == sorted(seen, reverse=True) and seen[-1] == 0
    r = httpx.get(f"{api}/v1/dev/customers", headers=h)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-limit"] == "3"
    assert r.headers["ratelimit-remaining"] == "0"
    assert int(r.headers["ratelimit-reset"]) >= 1
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_the_headers_are_documented(api) -> None:
    spec = httpx.get(f"{api}/openapi.json").json()
    responses = spec["paths"]["/v1/dev/customers"]["get"]["responses"]
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-Request-Id"} <= set(
        responses["200"]["headers"]
    )
    assert responses["429"]["headers"]["Retry-After"]["required"] is True
    assert "RateLimit-Limit" not in responses["401"]["headers"]
    error_body = spec["components"]["schemas"]["ErrorBody"]["properties"]
    assert "request_id" in error_body
