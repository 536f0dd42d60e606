"""Email through the profile's SMTP server (smtplib; STARTTLS optional).

The profile's ``smtp`` section::

    smtp:
      host: smtp.example.com
      port: 587
      from: "Platform <noreply@example.com>"
      starttls: true
      username: mno
      password: secret:SMTP_PASSWORD     # from the secret store, never inline
      timeout: 10s

It is also the port through which domain code asks for an email without depending on
the notification package: ``queue_direct()`` writes a *direct email* (one message to one
address) as a delivery row next to the event it belongs to, in the caller's transaction.
The dispatcher sends it (``mno.notify.direct`` renders it) with the same retries and
exhaustion as every delivery. Some such emails carry a secret meant only for their
recipient (the lead verification code), which must never enter the outbox, where every
webhook endpoint and ``mno events list`` would see it:

- channel ``direct_email``, the recipient's id as target, the event's id and seq;
- the body is the message recipe: ``{"to", "template", "context"}``, where secret
  context values are sealed under the master key (``{"$encrypted": …}``) and only the
  dispatcher opens them, when it renders the template;
- once the delivery succeeded or is exhausted, the sealed values are removed from the
  stored body (``scrub_direct()``).
"""

from __future__ import annotations

import json
import smtplib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from mno import clock, crypto, secrets, settings
from mno.errors import BadInput, Unavailable
from mno.store.models.webhooks import WebhookDelivery

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.store.models.core import Event

DIRECT_CHANNEL = "direct_email"
REDACTED = "[sent]"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    sender: str = "mno@localhost"
    starttls: bool = False
    username: str | None = None
    password_ref: str | None = None
    timeout: float = 10.0


def config() -> SmtpConfig | None:
    """The profile's SMTP settings, or None when email is not configured."""
    data: Any = settings.profile_value("smtp")
    if not data:
        return None
    if not isinstance(data, dict) or not data.get("host"):
        raise BadInput("profile smtp: expected a mapping with at least host")
    password = data.get("password")
    if password is not None and not secrets.is_ref(password):
        raise BadInput("profile smtp.password: give it as secret:NAME, never inline")
    return SmtpConfig(
        host=str(data["host"]),
        port=int(data.get("port", 25)),
        sender=str(data.get("from", "mno@localhost")),
        starttls=bool(data.get("starttls", False)),
        username=data.get("username"),
        password_ref=password,
        timeout=settings.parse_duration(data.get("timeout", "10s")).total_seconds(),
    )


@dataclass(frozen=True)
class Attachment:
    """A file sent with a message (e.g. an invoice's PDF)."""

    filename: str
    content: bytes
    mime: str = "application/pdf"


def send(
    to: str,
    subject: str,
    body: str,
    *,
    html: str | None = None,
    cfg: SmtpConfig | None = None,
    attachments: Sequence[Attachment] = (),
) -> None:
    """Send one message, with its attachments; raises Unavailable when the server cannot
    be reached."""
    cfg = cfg or config()
    if cfg is None:
        raise BadInput("email is not configured", "add an smtp section to the profile")
    msg = EmailMessage()
    msg["From"] = cfg.sender
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    for a in attachments:
        maintype, _, subtype = a.mime.partition("/")
        msg.add_attachment(a.content, maintype=maintype, subtype=subtype, filename=a.filename)
    try:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout) as smtp:
            if cfg.starttls:
                smtp.starttls()
            if cfg.username:
                password = secrets.resolve(cfg.password_ref) if cfg.password_ref else ""
                smtp.login(cfg.username, password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise Unavailable(f"cannot send email through {cfg.host}:{cfg.port}: {exc}") from exc


def queue_direct(
    session: Session,
    event: Event,
    *,
    target_id: uuid.UUID,
    to: str,
    template: str,
    context: dict[str, Any],
    sealed: dict[str, str] | None = None,
    sender: str | None = None,
) -> uuid.UUID:
    """Queue one email rendered from ``template`` with ``context`` (+ ``sealed`` values,
    stored encrypted) for the dispatcher; returns the delivery id (see the module doc).
    ``sender`` replaces the profile's from-address for this message."""
    session.flush()  # the event's id and seq
    recipe: dict[str, Any] = {
        "to": to,
        "template": template,
        "context": {
            "type": event.type,
            "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
            **context,
            **{k: crypto.sealed(v) for k, v in (sealed or {}).items()},
        },
    }
    if sender:
        recipe["from"] = sender
    body = json.dumps(recipe, separators=(",", ":"), ensure_ascii=False, default=str)
    if event.seq is None:  # the database assigns seq when the event is flushed
        session.flush()
    assert event.seq is not None
    now = clock.now()
    row = WebhookDelivery(
        created_at=now,
        updated_at=now,
        next_attempt_at=now,
        channel=DIRECT_CHANNEL,
        target_id=target_id,
        event_id=event.id,
        seq=event.seq,
        event_type=event.type,
        event_at=event.created_at,
        tenant_id=event.tenant_id,
        body=body,
        ordered=False,
    )
    session.add(row)
    session.flush()
    return row.id


def scrub_direct(body: str) -> str:
    """A direct email's recipe without its sealed values (kept once it is done with)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {crypto.ENCRYPTED_KEY}:
                return REDACTED
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return json.dumps(walk(json.loads(body)), separators=(",", ":"), ensure_ascii=False)
