"""Validators for the values operators type: keys, emails, domains, timezones, countries."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mno.errors import BadInput

_KEY = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_SLUG = re.compile(r"[^a-z0-9]+")


def tenant_key(value: str) -> str:
    """A DNS label of 2 to 40 characters: ``[a-z0-9-]``, not starting or ending with '-'."""
    if not _KEY.match(value or ""):
        raise BadInput(
            f"invalid key {value!r}",
            "2-40 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        )
    return value


def dns_label(value: str, what: str = "name") -> str:
    if not _LABEL.match(value or ""):
        raise BadInput(f"invalid {what} {value!r}", "a DNS label: a-z, 0-9 and '-', 1-63 chars")
    return value


def email(value: str) -> str:
    value = (value or "").strip()
    match = _EMAIL.match(value)
    if not match or len(value) > 254 or ".." in value:
        raise BadInput(f"invalid email {value!r}")
    local, _, host = value.rpartition("@")
    return f"{local}@{host.lower()}"


def email_domain(value: str) -> str:
    return value.rpartition("@")[2].lower()


def domain(value: str) -> str:
    """A fully qualified domain name, lower-cased."""
    value = (value or "").strip().lower().rstrip(".")
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise BadInput(f"invalid domain {value!r}", "e.g. acme.example.com")
    if labels[-1].isdigit():
        raise BadInput(f"invalid domain {value!r}", "a name, not an IP address")
    return value


def timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        hint = "use an IANA name such as Europe/Paris"
        raise BadInput(f"unknown timezone {value!r}", hint) from exc
    return value


def country(value: str | None) -> str | None:
    """An ISO 3166-1 alpha-2 code (``fr`` → ``FR``) that names a country; "" is none."""
    if value is None or value == "":
        return None
    code = value.strip().upper()
    if not _COUNTRY.match(code) or not _is_country(code):
        raise BadInput(f"invalid country {value!r}", "use an ISO 3166-1 alpha-2 code such as FR")
    return code


def _is_country(code: str) -> bool:
    import pycountry  # loads its database: only when a country is given

    return pycountry.countries.get(alpha_2=code) is not None


def text(value: str | None, what: str, max_length: int) -> str | None:
    """A free-text value (a name, a description) that fits its column: at most
    ``max_length`` characters and no NUL (which PostgreSQL cannot store)."""
    if value is None:
        return None
    if len(value) > max_length:
        raise BadInput(f"{what} is {len(value):,} characters long", f"at most {max_length}")
    if "\x00" in value:
        raise BadInput(f"{what} contains a NUL character")
    return value


def slug(value: str) -> str:
    return _SLUG.sub("-", value.lower()).strip("-")[:64]


def one_of(value: str, allowed: tuple[str, ...] | list[str], what: str) -> str:
    if value not in allowed:
        raise BadInput(f"invalid {what} {value!r}", f"one of: {', '.join(allowed)}")
    return value
