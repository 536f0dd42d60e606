"""Developer API invoices and credit notes (needs the billing package): a real uvicorn
server on loopback, on SQLite and PostgreSQL. Money in the one shape, times with Z."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.access.conftest import basic
from tests.cli_contract.shapes import money_fields, problems

pytest.importorskip("mno.billing.manual")
pytest.importorskip("mno.billing.credit_notes")


def eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


@pytest.fixture
def h(app_key, acme):
    return basic(app_key["key_id"], app_key["secret"])


MANUAL = {
    "tenant": "acme",
    "currency": "EUR",
    "lines": [
        {"description": "Migration work", "quantity": "3", "unit_price": "120.00"},
        {"description": "Travel", "quantity": "1", "unit_price": "45.50"},
    ],
    "issue": True,
}


def _post(api, path, body, h, key=None):
    headers = {**h, "Idempotency-Key": key} if key else h
    return httpx.post(f"{api}{path}", json=body, headers=headers)


def test_manual_invoice_then_credit_notes_with_idempotency(api, h, session):
    """3 x 120.00 + 45.50 = 405.50 (acme has no tax address: no tax); a credit note of
    10.00 of line 2 gives back 10.00."""
    first = _post(api, "/v1/dev/invoices", MANUAL, h, "inv-1")
    assert first.status_code == 201, first.text
    inv = first.json()
    assert problems(inv) == [] and money_fields(inv) >= 9
    assert (inv["kind"], inv["status"], inv["number"]) == ("manual", "issued", "INV-2026-000001")
    assert (inv["subtotal"], inv["tax"], inv["total"], inv["amount_due"]) == (
        eur("405.50"),
        eur("0.00"),
        eur("405.50"),
        eur("405.50"),
    )
    assert [ln["amount"] for ln in inv["lines"]] == [eur("360.00"), eur("45.50")]
    assert inv["issued_at"].endswith("Z") and inv["due_at"].endswith("Z")
    again = _post(api, "/v1/dev/invoices", MANUAL, h, "inv-1")
    assert again.status_code == 200 and again.json() == inv
    listed = httpx.get(f"{api}/v1/dev/invoices", params={"tenant": "acme"}, headers=h).json()
    assert [i["id"] for i in listed["invoices"]] == [inv["id"]] and listed["next"] is None
    got = httpx.get(f"{api}/v1/dev/invoices/{inv['number']}", headers=h)
    assert got.status_code == 200 and got.json() == inv

    path = f"/v1/dev/invoices/{inv['id']}/credit-notes"
    body = {"reason": "Travel billed twice", "line": 2, "amount": "10.00"}
    note = _post(api, path, body, h, "cn-1")
    assert note.status_code == 201, note.text
    cn = note.json()
    assert problems(cn) == []
    assert (cn["kind"], cn["number"], cn["credit_note_for"], cn["reason"]) == (
        "credit_note",
        "CN-2026-000001",
        "INV-2026-000001",
        "Travel billed twice",
    )
    assert (cn["subtotal"], cn["total"], cn["refund"]) == (eur("10.00"), eur("10.00"), None)
    replay = _post(api, path, body, h, "cn-1")
    assert replay.status_code == 200 and replay.json()["id"] == cn["id"]
    # the same key for another kind of request is a conflict, and writes nothing
    clash = _post(api, "/v1/dev/invoices", MANUAL, h, "cn-1")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "conflict"
    notes = httpx.get(f"{api}/v1/dev/credit-notes", params={"tenant": "acme"}, headers=h).json()
    assert [n["number"] for n in notes["credit_notes"]] == ["CN-2026-000001"]
    assert problems(notes) == []
    shown = httpx.get(f"{api}/v1/dev/credit-notes/CN-2026-000001", headers=h)
    assert shown.status_code == 200 and shown.json()["id"] == cn["id"]
    # an invoice is not a credit note and the other way round
    assert httpx.get(f"{api}/v1/dev/credit-notes/{inv['id']}", headers=h).status_code == 404
    assert httpx.get(f"{api}/v1/dev/invoices/{cn['id']}", headers=h).status_code == 404
    # a refund: money goes back, limited to what was paid (nothing yet): 409
    refund = {"reason": "x", "amount": "1.00", "refund": True, "method": "card"}
    refused = _post(api, path, refund, h)
    assert refused.status_code == 409 and "refunded" in refused.json()["error"]["message"]
    # paid, it may be refunded; a replay shows the same refund
    from mno.billing import invoices

    with session() as s:
        invoices.pay(s, inv["id"])
    refunded = _post(api, path, refund, h, "rf-1")
    assert refunded.status_code == 201, refunded.text
    assert refunded.json()["refund"] == {
        "amount": eur("1.00"),
        "method": "card",
        "reference": None,
    }
    again = _post(api, path, refund, h, "rf-1")
    assert again.status_code == 200 and again.json() == refunded.json()
    # more than is left on the line: 409
    too_much = _post(api, path, {"reason": "x", "line": 2, "amount": "40.00"}, h)
    assert too_much.status_code == 409, too_much.text
    listed = httpx.get(f"{api}/v1/dev/invoices", params={"tenant": "acme"}, headers=h).json()
    assert len(listed["invoices"]) == 1


def test_concurrent_posts_with_one_key_book_one_credit_note(api, h, session):
    from sqlmodel import select

    from mno.store.models.billing import Invoice

    inv = _post(api, "/v1/dev/invoices", MANUAL, h).json()
    path = f"/v1/dev/invoices/{inv['id']}/credit-notes"
    answers: list[httpx.Response] = []

    def post() -> None:
        answers.append(_post(api, path, {"reason": "outage", "amount": "5.00"}, h, "same"))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in answers) == [200] * 5 + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    with session(write=False) as s:
        keys = s.exec(select(Invoice.idempotency_key).where(Invoice.kind == "credit_note")).all()
        assert list(keys) == ["crm:same"]


def test_refusals_answer_with_statuses_and_write_nothing(api, h, session, store_url):
    from mno.billing import manual
    from mno.tenancy import tenants
    from tests.conftest import counts

    with session() as s:
        tenants.create(s, "globex")
        other = manual.create(s, "globex", [manual.parse_line("Work:1:10")], issue=True)
        other_id = str(other.id)
    draft = _post(api, "/v1/dev/invoices", {**MANUAL, "issue": False}, h).json()
    assert draft["status"] == "draft" and draft["number"] is None
    before = counts(store_url)
    cases = [
        # a draft is not credited: 409
        (f"/v1/dev/invoices/{draft['id']}/credit-notes", {"reason": "x"}, 409, "conflict"),
        # another tenant's invoice is unknown to the app: 404
        (f"/v1/dev/invoices/{other_id}/credit-notes", {"reason": "x"}, 404, "not_found"),
        ("/v1/dev/invoices/nope/credit-notes", {"reason": "x"}, 404, "not_found"),
        # not a customer: 403
        ("/v1/dev/invoices", {**MANUAL, "tenant": "globex"}, 403, "forbidden"),
        # bad input: 422
        ("/v1/dev/invoices", {**MANUAL, "lines": []}, 422, "invalid"),
        ("/v1/dev/invoices", {**MANUAL, "currency": "XXX"}, 422, "invalid"),
        (
            "/v1/dev/invoices",
            {**MANUAL, "lines": [{"description": "x", "quantity": "1", "unit_price": "1e3"}]},
            422,
            "invalid",
        ),  # fmt: skip
        (f"/v1/dev/invoices/{draft['id']}/credit-notes", {"reason": ""}, 422, "invalid"),
        (
            f"/v1/dev/invoices/{draft['id']}/credit-notes",
            {"reason": "x", "amount": "-1"},
            422,
            "invalid",
        ),  # fmt: skip
    ]
    for path, body, status, code in cases:
        r = _post(api, path, body, h, "k-refused")
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (r.json()["status"], r.json()["detail"]) == (status, r.json()["error"]["message"])
    assert counts(store_url) == before
    assert httpx.get(f"{api}/v1/dev/invoices/{other_id}", headers=h).status_code == 404
    listed = httpx.get(f"{api}/v1/dev/invoices", params={"tenant": "globex"}, headers=h)
    assert listed.status_code == 403
    assert httpx.get(f"{api}/v1/dev/invoices", params={"tenant": "acme"}).status_code == 401


def test_invoice_pages_follow_next(api, h):
    ids = [_post(api, "/v1/dev/invoices", MANUAL, h).json()["id"] for _ in range(3)]
    seen: list[str] = []
    after = None
    while True:
        params = {"tenant": "acme", "limit": 2, **({"after": after} if after else {})}
        page = httpx.get(f"{api}/v1/dev/invoices", params=params, headers=h).json()
        seen += [i["id"] for i in page["invoices"]]
        after = page["next"]
        if after is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 3


def test_openapi_lists_the_invoice_routes_with_their_statuses(api):
    spec = httpx.get(f"{api}/openapi.json").json()
    paths = spec["paths"]
    for path, method, codes in (
        ("/v1/dev/invoices", "get", {"200", "401", "403", "422"}),
        ("/v1/dev/invoices", "post", {"200", "201", "401", "403", "409", "422"}),
        ("/v1/dev/invoices/{invoice_id}", "get", {"200", "404"}),
        ("/v1/dev/credit-notes", "get", {"200", "403"}),
        ("/v1/dev/credit-notes/{note_id}", "get", {"200", "404"}),
        ("/v1/dev/invoices/{invoice_id}/credit-notes", "post", {"200", "201", "404", "409"}),
    ):
        assert codes <= set(paths[path][method]["responses"]), (path, method)
    post = paths["/v1/dev/invoices/{invoice_id}/credit-notes"]["post"]
    assert "application/problem+json" in post["responses"]["409"]["content"]
    assert any(p["name"] == "Idempotency-Key" for p in post["parameters"])
    money = spec["components"]["schemas"]["Money"]
    assert set(money["properties"]) == {"amount", "currency"}


def test_bills_answer_money_in_the_one_shape(api, h):
    body = {"tenant": "acme", "amount": "12.5", "currency": "USD", "description": "Setup"}
    bill = _post(api, "/v1/dev/bills", body, h).json()
    assert bill["amount"] == {"amount": "12.50", "currency": "USD"}
    assert problems(bill) == [] and bill["created_at"].endswith("Z")
