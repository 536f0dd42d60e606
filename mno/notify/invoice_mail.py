"""What an email about an invoice adds to its event: the invoice's fields and its PDF.

Every ``invoice.*`` event's email template gets ``invoice`` in its context:
``number``, ``total`` (a decimal string in the currency's minor units), ``currency``,
``status``, ``period`` (of a period's invoice, else None), ``issued_date`` and
``due_date`` (``YYYY-MM-DD``) and ``url``, the invoice on the hub: the profile's
``hub.url`` + ``/invoices/<number>`` (None when ``hub.url`` is not set)::

    hub:
      url: https://hub.example.com

An email rendered from the ``invoice_issued`` template also carries the invoice's PDF
(``mno.billing.invoice_pdf``: the tenant's invoice template, the platform's or the
built-in one). When the PDF cannot be made the delivery fails and is retried, so the
email never goes out without it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from mno import settings
from mno.mail import Attachment
from mno.money import from_minor
from mno.store.models.billing import Invoice

if TYPE_CHECKING:
    from sqlmodel import Session

WITH_PDF = ("invoice_issued",)


def _invoice(session: Session, event: dict[str, Any]) -> Invoice | None:
    if not str(event.get("type", "")).startswith("invoice."):
        return None
    data = event.get("data") or {}
    try:
        return session.get(Invoice, uuid.UUID(str(data.get("id"))))
    except ValueError:
        return None


def url(number: str | None) -> str | None:
    """The invoice's page on the hub, when the profile names the hub (``hub.url``)."""
    base = settings.profile_value("hub.url")
    if not base or not number:
        return None
    return f"{str(base).rstrip('/')}/invoices/{number}"


def context(session: Session, event: dict[str, Any]) -> dict[str, Any]:
    """``{"invoice": {...}}`` for an ``invoice.*`` event (see the module doc), else ``{}``."""
    inv = _invoice(session, event)
    if inv is None:
        return {}
    data = event.get("data") or {}
    # the total the event announced (at issue, after prepaid credits), else the row's
    total_minor = data.get("total_minor", inv.total_minor)
    return {
        "invoice": {
            "number": inv.number,
            "total": str(from_minor(int(total_minor), inv.currency)),
            "currency": inv.currency,
            "period": inv.period if inv.kind == "period" else None,
            "status": inv.status,
            "issued_date": inv.issued_at.date().isoformat() if inv.issued_at else None,
            "due_date": inv.due_at.date().isoformat() if inv.due_at else None,
            "url": url(inv.number),
        }
    }


def attachments(session: Session, template: str, event: dict[str, Any]) -> list[Attachment]:
    """The invoice's PDF for an email rendered from ``invoice_issued``; else nothing."""
    if template not in WITH_PDF:
        return []
    inv = _invoice(session, event)
    if inv is None:
        return []
    from mno.billing import export, invoice_pdf

    page, directory = export.page(session, inv)
    return [Attachment(invoice_pdf.filename(inv), invoice_pdf.render_pdf(page, directory))]
