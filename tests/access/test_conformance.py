"""The hub API keeps to its OpenAPI document: each route lists the statuses it answers,
a 405 names in ``Allow`` every method of the path, and an unknown query parameter is
refused with 422 naming it (real uvicorn on 127.0.0.1, SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.access.conftest import basic

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/dev/bills/b1", "GET, DELETE"),
        ("PATCH", "/v1/dev/invoices", "GET, POST"),
        ("DELETE", "/v1/dev/invoices/i1/credit-notes", "POST"),
        ("GET", "/v1/idm/authorize", "POST"),
        ("POST", "/v1/dev/customers", "GET"),
    ],
)
def test_405_allows_every_method_of_the_path(api, method, path, allow) -> None:
    r = httpx.request(method, f"{api}{path}")
    assert r.status_code == 405
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["allow"] == allow
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_unknown_query_parameters_are_refused_naming_them(api, app_key, acme) -> None:
    h = basic(app_key["key_id"], app_key["secret"])
    known = httpx.get(f"{api}/v1/dev/customers", headers=h, params={"limit": 5})
    assert known.status_code == 200
    for method, path, body in (
        ("GET", "/v1/dev/customers", None),
        ("GET", "/v1/dev/invoices", None),
        ("POST", "/v1/idm/authorize", {"token": "t", "tenant": "acme", "action": "read"}),
        ("POST", "/v1/dev/usage", {"tenant": "acme", "metric": "api_calls", "quantity": "1"}),
    ):
        r = httpx.request(
            method,
            f"{api}{path}",
            headers=h,
            json=body,
            params={"limit": 5, "colour": "red"} if method == "GET" else {"colour": "red"},
        )
        assert r.status_code == 422, (path, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["detail"] == "unknown query parameter 'colour'", path


def _responses(spec: dict, method: str, path: str) -> dict:
    return spec["paths"][path][method]["responses"]


def test_each_route_documents_the_statuses_it_answers(api) -> None:
    spec = httpx.get(f"{api}/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            codes = set(op["responses"])
            errors = {c for c in codes if c >= "400"}
            assert {"401", "422", "429"} <= errors, (method, path)
            for code in errors:
                content = op["responses"][code]["content"]
                assert list(content) == [PROBLEM], (method, path, code)
            if method in ("get", "delete"):  # no body: nothing to parse, nothing too large
                assert not {"400", "413"} & codes, (method, path)
            else:
                assert {"400", "413"} <= codes, (method, path)
    authorize = _responses(spec, "post", "/v1/idm/authorize")
    assert "open action without an instance" in authorize["422"]["description"]
    assert "NUL" in authorize["422"]["description"]
    assert "unknown" in _responses(spec, "get", "/v1/dev/customers")["422"]["description"]


def test_the_documented_422s_are_answered(api, app_key, acme) -> None:
    h = basic(app_key["key_id"], app_key["secret"])
    url = f"{api}/v1/idm/authorize"
    needs = httpx.post(url, headers=h, json={"token": "t", "tenant": "acme", "action": "open"})
    assert needs.status_code == 422
    assert needs.json()["detail"] == "the open action needs an instance"
    other = {"token": "t", "tenant": "acme", "action": "read", "instance": str(uuid.uuid4())}
    assert httpx.post(url, headers=h, json=other).status_code == 422
    nul = httpx.post(
        url,
        headers={**h, "content-type": "application/json"},
        content=b'{"token": "t\\u0000", "tenant": "acme", "action": "read"}',
    )
    assert nul.status_code == 422
    assert nul.json()["detail"] == "NUL characters are not allowed"


def test_the_agents_listener_answers_405_and_404_the_same_way(api) -> None:
    from mno.agents import http

    srv = http.serve_in_thread(None, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
        r = httpx.put(f"{base}/v1/dev/bills/b1")
        assert r.status_code == 405 and r.headers["allow"] == "GET, DELETE"
        assert r.headers["content-type"] == PROBLEM
        assert httpx.post(f"{base}/metrics").headers["allow"] == "GET"
        missing = httpx.get(f"{base}/nowhere")
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    finally:
        srv.should_exit = True


def test_values_of_the_wrong_json_type_are_refused(api, app_key, acme) -> None:
    h = basic(app_key["key_id"], app_key["secret"])
    usage = {"tenant": "acme", "metric": "api_calls", "quantity": "1", "at": 0}
    r = httpx.post(f"{api}/v1/dev/usage", headers=h, json=usage)
    assert r.status_code == 422 and r.json()["detail"].startswith("at: "), r.text
    line = {"description": "Work", "quantity": "1", "unit_price": "10.00"}
    invoice = {"tenant": "acme", "lines": [line], "issue": "yes"}
    r = httpx.post(f"{api}/v1/dev/invoices", headers=h, json=invoice)
    assert r.status_code == 422 and r.json()["detail"].startswith("issue: "), r.text
    note = {"reason": "outage", "line": "1"}
    r = httpx.post(f"{api}/v1/dev/invoices/{uuid.uuid4()}/credit-notes", headers=h, json=note)
    assert r.status_code == 422 and r.json()["detail"].startswith("line: "), r.text
