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
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from mno import secrets, settings
from mno.errors import BadInput, Unavailable


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


def send(
    to: str, subject: str, body: str, *, html: str | None = None, cfg: SmtpConfig | None = None
) -> None:
    """Send one message; raises Unavailable when the server cannot be reached."""
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
