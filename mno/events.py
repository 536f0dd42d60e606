"""The catalogue of event types. ``mno events types`` prints it.

Every event emitted through the outbox must be listed here: a dotted lowercase name and
a one-line description. Add new types next to their domain.
"""

from __future__ import annotations

CATALOGUE: dict[str, str] = {
    # tenancy
    "tenant.created": "A tenant was created.",
    "tenant.updated": "A tenant's fields changed.",
    "tenant.status_changed": "A tenant moved to another status (payload: from, to, reason).",
    "tenant.deleted": "A tenant was deleted.",
    "tenant.contact_added": "A contact was added to a tenant.",
    "tenant.contact_removed": "A contact was removed from a tenant.",
    "lead.created": "A lead signed up and was sent a verification code.",
    "lead.verified": "A lead confirmed its email address.",
    "lead.locked": "A lead was locked after too many wrong codes.",
    "lead.converted": "A verified lead became a tenant.",
    "app.created": "An app was added to the catalogue.",
    "app.updated": "An app's fields changed.",
    "app.enabled": "An app was enabled.",
    "app.disabled": "An app was disabled.",
    "app.access_granted": "A tenant was granted explicit access to an app.",
    "app.access_revoked": "A tenant's explicit access to an app was revoked.",
    # gitops
    "gitops.applied": "Documents were applied (payload: source, created, updated, deleted).",
}


def is_known(event_type: str) -> bool:
    return event_type in CATALOGUE


def matches(pattern: str, event_type: str) -> bool:
    """Dotted-type matching with ``*`` wildcards: ``tenant.*`` matches ``tenant.created``."""
    from fnmatch import fnmatchcase

    return fnmatchcase(event_type, pattern)
