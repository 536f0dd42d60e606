"""Jinja2 email templates: built-in defaults, overridable per tenant (or platform-wide).

A template's first line is ``Subject: …``; the rest is the plain-text body. Both are
rendered with ``type``, ``timestamp``, ``data`` (the event payload), ``tenant`` and any
extra context (e.g. the lead verification ``code``, which never sits in the outbox).

jinja2 is imported only when a template is rendered, so importing this module stays cheap.
"""

from __future__ import annotations

import uuid
from importlib import resources
from typing import Any

from sqlmodel import Session, select

from mno.errors import BadInput, NotFound
from mno.store import audit
from mno.store.models.webhooks import NotifyTemplate

BUILTIN = (
    "lead_verification",
    "tenant_welcome",
    "invoice_issued",
    "invoice_overdue",
    "instance_failed",
)


def builtin_text(name: str) -> str:
    if name not in BUILTIN:
        raise NotFound(f"no template {name!r}", "one of: " + ", ".join(BUILTIN))
    return resources.files("mno.notify").joinpath(f"templates/{name}.j2").read_text()


def split(text: str) -> tuple[str, str]:
    first, _, rest = text.partition("\n")
    if not first.lower().startswith("subject:"):
        raise BadInput("a template starts with a 'Subject: …' line")
    return first.split(":", 1)[1].strip(), rest


def source(session: Session | None, name: str, tenant_id: uuid.UUID | None) -> tuple[str, str]:
    """(subject, body) template source: the tenant's override, the platform's, the default."""
    if session is not None:
        for tid in ([tenant_id] if tenant_id else []) + [None]:
            row = session.exec(
                select(NotifyTemplate).where(
                    NotifyTemplate.name == name, NotifyTemplate.tenant_id == tid
                )
            ).first()
            if row is not None:
                return row.subject, row.body
    return split(builtin_text(name))


def _env() -> Any:
    from jinja2 import StrictUndefined, Undefined
    from jinja2.sandbox import SandboxedEnvironment

    del StrictUndefined
    return SandboxedEnvironment(undefined=Undefined, autoescape=False, keep_trailing_newline=True)


def render(
    session: Session | None, name: str, tenant_id: uuid.UUID | None, context: dict[str, Any]
) -> tuple[str, str]:
    subject_src, body_src = source(session, name, tenant_id)
    env = _env()
    try:
        subject = env.from_string(subject_src).render(**context).strip()
        body = env.from_string(body_src).render(**context)
    except Exception as exc:  # reported: whatever a broken override raises becomes BadInput
        raise BadInput(f"template {name!r} does not render: {exc}") from exc
    return subject, body


def set_override(session: Session, name: str, text: str, tenant_id: uuid.UUID | None) -> None:
    if name not in BUILTIN:
        raise BadInput(f"no template {name!r}", "one of: " + ", ".join(BUILTIN))
    subject, body = split(text)
    _env().from_string(body)  # syntax check
    row = session.exec(
        select(NotifyTemplate).where(
            NotifyTemplate.name == name, NotifyTemplate.tenant_id == tenant_id
        )
    ).first()
    if row is None:
        row = NotifyTemplate(name=name, tenant_id=tenant_id, subject=subject, body=body)
    else:
        row.subject, row.body = subject, body
        row.touch()
    session.add(row)
    session.flush()
    audit.record(
        session,
        "notify.template_set",
        target_type="notify_template",
        target_id=str(row.id),
        target=name,
        after={"subject": subject},
        tenant_id=tenant_id,
    )
