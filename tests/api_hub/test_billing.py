"""Hub API subscriptions and invoices on a live server."""

from __future__ import annotations

import pytest

from tests.billing.conftest import CATALOGUE


@pytest.fixture
def plans(session, world):
    from mno.billing import documents
    from mno.tenancy import tenants

    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.update(s, "acme", currency="EUR")


def _issued_invoice(hub, world, session) -> tuple[str, str]:
    """acme subscribed to pro with its first period billed and issued: (sub id, invoice)."""
    from mno.billing import invoices

    admin = hub.as_(world["admin"])
    r = admin.post("/v1/hub/tenants/acme/subscriptions", json={"plan": "pro", "invoice_now": True})
    assert r.status_code == 201, r.text
    sub = r.json()["id"]
    with session() as s:
        inv = invoices.list_invoices(s, "acme")[0]
        invoices.issue(s, str(inv.id))
        number = invoices.get(s, inv.id).number
    return sub, number


def test_subscriptions_create_change_cancel(hub, world, plans):
    admin = hub.as_(world["admin"])
    r = admin.post("/v1/hub/tenants/acme/subscriptions", json={"plan": "pro"})
    assert r.status_code == 201, r.text
    sub = r.json()
    assert (sub["tenant"], sub["plan"], sub["status"]) == ("acme", "pro", "active")
    assert r.headers["location"] == f"/v1/hub/subscriptions/{sub['id']}"
    bob = hub.as_(world["bob"])
    assert bob.get(f"/v1/hub/subscriptions/{sub['id']}").json() == sub
    listed = bob.get("/v1/hub/tenants/acme/subscriptions").json()["subscriptions"]
    assert [x["id"] for x in listed] == [sub["id"]]
    # a member may not purchase; another tenant's admin does not see it at all
    assert bob.post("/v1/hub/tenants/acme/subscriptions", json={"plan": "pro"}).status_code == 403
    carol = hub.as_(world["carol"])
    assert carol.get(f"/v1/hub/subscriptions/{sub['id']}").status_code == 404
    assert carol.post(f"/v1/hub/subscriptions/{sub['id']}/cancel").status_code == 404
    r = admin.post("/v1/hub/tenants/acme/subscriptions", json={"plan": "nope"})
    assert r.status_code == 404
    r = admin.post(f"/v1/hub/subscriptions/{sub['id']}/change", json={"plan": "pro"})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["id"] != sub["id"]
    assert r.headers["location"] == f"/v1/hub/subscriptions/{new['id']}"
    assert bob.get(f"/v1/hub/subscriptions/{sub['id']}").json()["status"] == "canceled"
    r = admin.post(f"/v1/hub/subscriptions/{sub['id']}/cancel")
    assert r.status_code == 409
    assert r.json()["detail"] == f"subscription {sub['id']} is already canceled"
    r = admin.post(f"/v1/hub/subscriptions/{new['id']}/cancel", json={"at_period_end": True})
    assert r.status_code == 200, r.text
    assert r.json()["cancel_at"] is not None


def test_invoices_list_show_explain_pdf(hub, world, plans, session):
    _, number = _issued_invoice(hub, world, session)
    bob = hub.as_(world["bob"])
    listed = bob.get("/v1/hub/tenants/acme/invoices").json()["invoices"]
    assert [i["number"] for i in listed] == [number]
    from mno.billing import export, invoices
    from mno.store.audit import jsonable

    with session() as s:
        inv = invoices.get(s, number)
        cli_json = jsonable(export.view(s, inv)[0])  # what `mno invoice show -o json` shows
    total = cli_json["total"]
    assert total["currency"] == "EUR" and total["amount"] != "0.00"
    assert listed[0]["total"] == total
    shown = bob.get(f"/v1/hub/invoices/{number}")
    assert shown.status_code == 200
    assert {k: shown.json()[k] for k in cli_json} == cli_json
    assert shown.json()["lines"][0]["amount"] == total
    explained = bob.get(f"/v1/hub/invoices/{number}/explain").json()
    assert total["amount"] in explained["text"]
    pdf = bob.get(f"/v1/hub/invoices/{number}/pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    carol = hub.as_(world["carol"])
    assert carol.get(f"/v1/hub/invoices/{number}").status_code == 404
    assert carol.get(f"/v1/hub/invoices/{number}/pdf").status_code == 404
    assert carol.get("/v1/hub/tenants/acme/invoices").status_code == 404


def test_pay_and_credit_are_the_platforms(hub, world, plans, session):
    _, number = _issued_invoice(hub, world, session)
    owner = hub.as_(world["owner"])
    assert owner.post(f"/v1/hub/invoices/{number}/pay").status_code == 403
    op = hub.as_(world["op"])
    r = op.post(f"/v1/hub/invoices/{number}/pay", json={"amount": "20.00", "method": "card"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "partially_paid"
    assert r.json()["payment"]["applied"] == {"amount": "20.00", "currency": "EUR"}
    r = op.post(f"/v1/hub/invoices/{number}/credit", json={"reason": "goodwill"})
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["kind"] == "credit_note"
    assert note["credit_note_for"] == number
    assert r.headers["location"] == f"/v1/hub/invoices/{note['id']}"
    assert owner.post(f"/v1/hub/invoices/{number}/credit", json={"reason": "x"}).status_code == 403
