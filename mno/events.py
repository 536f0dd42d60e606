"""The catalogue of event types. ``mno events types`` prints it.

Every event emitted through the outbox must be listed here: a dotted lowercase name and
a one-line description. Add new types next to their domain.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

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
    "frontend.created": "A frontend (sign-up site with its own credentials) was created.",
    "frontend.deleted": "A frontend was deleted.",
    "tenant.provisioning_requested": (
        "External provisioning was requested (payload: tenantId, contextId, the one-time "
        "callbackSecret, expiresAt); answer with a signed POST /v1/callbacks/provisioning."
    ),
    # nex (hosted instances)
    "instance.created": "An app instance was recorded for a tenant (staged).",
    "instance.updated": "An instance's desired state, image, env or domains changed.",
    "instance.provisioning": "The provisioner started creating an instance's container.",
    "instance.pending_capacity": (
        "No host has room for an instance: it waits and is placed as soon as room appears."
    ),
    "instance.running": "An instance is running and healthy.",
    "instance.failed": "An instance failed (payload: error); the provisioner retries it.",
    "instance.stopped": "An instance was stopped.",
    "instance.terminated": "An instance was terminated and its container removed.",
    "instance.drift_detected": "An instance's container was changed outside mno.",
    "instance.backed_up": (
        "A backup of an instance's data volume was written (a tar export, or a restic "
        "snapshot: payload snapshot, bytes, trigger)."
    ),
    "instance.backup_failed": "A restic backup of an instance's data volume failed (error).",
    "instance.restored": (
        "An instance's data volume was restored from a backup, on a fresh volume (payload: "
        "volume, previous_volume: the replaced volume, kept for retention.previous_volumes)."
    ),
    "instance.previous_volume_removed": "The data volume a restore replaced was removed.",
    "certificate.set": (
        "An operator-supplied TLS certificate was set or rotated for a domain (payload: "
        "domain, names, fingerprint, not_after, rotated; never the key)."
    ),
    "certificate.removed": "An operator-supplied TLS certificate was removed from a domain.",
    "instance.endpoint_changed": (
        "An instance's container answers on a new address (payload: endpoint, previous), "
        "e.g. after a restart outside mno."
    ),
    "instance.update_failed": (
        "An update failed its health gate; the previous container serves again "
        "(payload: image, error, rolled_back_to)."
    ),
    "host.created": "A Docker host was added to the store (payload: its settings).",
    "host.updated": "A stored Docker host's settings changed.",
    "host.deleted": "A stored Docker host was removed.",
    "host.node_updated": (
        "A node of a swarm host was drained, paused, activated or relabelled (payload: host, "
        "node, id, availability, labels)."
    ),
    "nex.capacity_low": (
        "A host's (or swarm node's) headroom fell under the capacity thresholds (payload: "
        "host, node, memory_free_pct, slots_free, low, thresholds); once until it recovers."
    ),
    "nex.capacity_exhausted": (
        "An instance could not be placed for lack of room and waits in pending_capacity "
        "(payload: instance, app, reason, waiting); once until nothing waits."
    ),
    "nex.scale_out_ran": (
        "The capacity.scale_out command ran (payload: command, exit_code, timed_out, "
        "duration_s, waiting)."
    ),
    "app.created": "An app was added to the catalogue.",
    "app.updated": "An app's fields changed.",
    "app.deleted": "An app was removed from the catalogue.",
    "app.enabled": "An app was enabled.",
    "app.disabled": "An app was disabled.",
    "app.access_granted": (
        "A tenant was granted read or edit access to an app (payload: tenant, can_edit, "
        "granted_by: owner key or system, package when it came from one)."
    ),
    "app.access_revoked": "A tenant's grant on an app was revoked (payload: tenant, revoked_by).",
    "app_package.created": "A package of apps was created (payload: name, apps).",
    "app_package.updated": "A package's apps changed (payload: name, added, removed).",
    "app_package.deleted": "A package of apps was deleted.",
    "app_package.granted": "A package was granted to a tenant; each app is granted with it.",
    "app_package.revoked": "A package was revoked from a tenant, with the grants it gave.",
    # sync
    "record.created": "A sync created a canonical record (payload: record_id, entity, data).",
    "record.updated": "A canonical record changed (payload: record_id, entity, version, data).",
    "record.deleted": "A canonical record was deleted (payload: record_id, entity, version).",
    "connection.updated": (
        "A connection's entities, directions, preemption, credentials or base URL changed."
    ),
    "conflict.resolved": (
        "An operator resolved a sync conflict (payload: conflict_id, connection, record_id, "
        "entity, keep local|remote, resolved_by)."
    ),
    "connection.state_reset": (
        "A connection's stream cursors were reset: its next run pulls everything again."
    ),
    "connection.backfilled": (
        "Existing records were queued to push to a connection (payload: name, entities, records)."
    ),
    "connection.authorized": (
        "A connection's OAuth tokens were stored from an authorization code (secret names only)."
    ),
    # access
    "user.created": "A user was created.",
    "user.disabled": "A user was disabled.",
    "user.active": "A disabled user was enabled again.",
    "user.token_created": "A personal token was issued to a user (never the token itself).",
    "user.token_revoked": "A user's personal token was revoked.",
    # sso (the hub's sign-in)
    "sso.signed_in": "A user signed in at the hub (payload: user, session, mfa).",
    "sso.signed_out": "A hub session ended (sign-out, or every session of a user).",
    "sso.client_enabled": "An app became an OpenID Connect client (payload: app, client_id).",
    "sso.client_disabled": "An app stopped being an OpenID Connect client.",
    "sso.keys_rotated": "New OIDC signing keys became active (payload: active, retired kids).",
    "sso.consent_granted": "A user consented to an app signing them in (payload: user, app).",
    "sso.token_issued": "Tokens were issued to an app for a user (code or refresh grant).",
    "sso.token_revoked": "An app revoked a token (RFC 7009), or the hub revoked a grant.",
    "sso.refresh_reuse_detected": "A rotated refresh token was used again: its family is revoked.",
    "sso.code_reuse_detected": "An authorization code was used twice: its tokens are revoked.",
    "sso.signin_failed": "A sign-in at the hub was refused (payload: email or null, reason).",
    "sso.locked_out": "A user's sign-in is locked after repeated failures (payload: user, until).",
    "user.password_set": "A user's password was set or changed (never the password).",
    "user.mfa_enabled": "A user's TOTP second factor was enabled (never the secret).",
    "user.mfa_disabled": "A user's TOTP second factor was removed.",
    "member.added": "A user joined a tenant with a role.",
    "member.role_changed": "A member's role changed (payload: from, to).",
    "member.removed": "A user left a tenant.",
    "role.created": "A custom role was defined (payload: name, tenant or null, permissions).",
    "role.deleted": "A custom role was deleted.",
    "team.created": "A team was created in a tenant.",
    "team.member_added": "A member was added to a team.",
    "team.instance_added": "An app instance was added to a team.",
    "invite.created": "An invite was sent (email, role, team, expiry; never the token).",
    "invite.accepted": "An invite was accepted and its user joined the tenant.",
    "invite.revoked": "An invite was revoked.",
    "app.key_rotated": "An app's API key was rotated; older keys retire after a grace period.",
    # webhooks and notifications
    "webhook.ping": "A test event sent by `mno webhook test` to one endpoint only.",
    "webhook.endpoint_created": "A webhook endpoint was registered.",
    "webhook.endpoint_updated": "A webhook endpoint's settings, state or secret changed.",
    "webhook.endpoint_deleted": "A webhook endpoint was deleted.",
    "webhook.delivery_exhausted": "A delivery ran out of retries (never sent to that endpoint).",
    "webhook.endpoint_disabled": "An endpoint was disabled by a 410 or after days of failures.",
    "webhook.replayed": "Deliveries were re-queued by an operator (payload: endpoint_id, count).",
    "notify.rule_created": "An email notification rule was added.",
    "notify.rule_deleted": "An email notification rule was removed.",
    # gitops
    "gitops.applied": "Documents were applied (payload: source, created, updated, deleted).",
    "metric.created": "A billing metric was added to the catalogue (payload: code, fields).",
    "metric.updated": "A billing metric's fields changed (payload: code, fields).",
    "metric.deleted": "A billing metric was deleted from the catalogue (payload: code).",
    "plan.created": "A plan was added to the catalogue (payload: code, version 1).",
    "plan.updated": (
        "A plan's prices or terms changed: a new version became current (payload: code, "
        "version, from_version); subscriptions stay on theirs."
    ),
    "plan.deleted": "A plan and all its versions were deleted (payload: code, versions).",
    "coupon.created": "A coupon was added to the catalogue (payload: code, fields).",
    "coupon.updated": "A coupon's fields changed (payload: code, fields).",
    "coupon.deleted": "A coupon was deleted from the catalogue (payload: code).",
    "tax_rate.created": "A tax rate was added to the catalogue (payload: code, fields).",
    "tax_rate.updated": "A tax rate's fields changed (payload: code, fields).",
    "tax_rate.deleted": "A tax rate was deleted from the catalogue (payload: code).",
    "invoice.created": "A draft invoice was created by a billing run or by hand (no number yet).",
    "invoice.updated": "A line of a draft invoice was added, changed or removed (payload: change).",
    "invoice.issued": "An invoice was issued with its number (billing).",
    "invoice.payment_recorded": (
        "A payment was recorded on an invoice, in part, in full or beyond (payload: amount,"
        " applied, overpaid to credit, amount due, method, reference)."
    ),
    "invoice.paid": "An invoice was paid in full (billing).",
    "invoice.voided": "An invoice was voided; a credit note was created if it was issued.",
    "invoice.overdue": "An issued invoice is unpaid past its due date plus grace.",
    "credit_note.issued": "A credit note was booked against an invoice (payload: reason).",
    "refund.recorded": "Money was returned to a tenant (payload: amount, method, reference).",
    "subscription.created": "A tenant subscribed to a plan version.",
    "subscription.canceled": "A subscription was canceled now or at period end.",
    "subscription.plan_changed": "A subscription moved to another plan.",
    "subscription.activated": "A subscription's trial ended: it is billed from then on.",
    "bundle.created": "A bundle (plans and apps sold as one) was added to the catalogue.",
    "bundle.updated": "A bundle's price, interval or parts changed (payload: the bundle).",
    "bundle.archived": "A bundle was archived: no new subscriptions (payload: code).",
    "bundle_subscription.created": "A tenant subscribed to a bundle (its parts with it).",
    "bundle_subscription.canceled": "A bundle subscription and its parts were canceled.",
    "bundle_subscription.changed": "A bundle subscription moved to another bundle.",
    "bundle_subscription.ended": "A bundle subscription cancelled for later reached its end.",
    "charge.created": "A one-off charge was submitted for a tenant.",
    "charge.cancelled": "A one-off charge was cancelled before it was invoiced.",
    "billing.run_finished": "A billing run finished with its counts and failures.",
    "tax_treatment.set": "A tenant was made exempt from tax or put under reverse charge.",
    "tax_treatment.removed": "A tenant's tax exemption or reverse charge was removed.",
    "credit.added": (
        "Prepaid credit was added to a tenant's balance (payload: tenant, credit, "
        "amount_minor, currency, expires_at, reference)."
    ),
    "credit.expired": "Prepaid credit reached its expiry; its unused part left the balance.",
    # connec (apps sharing a tenant's records; custom entities add theirs when loaded)
    "connec.organizations.created": "An app created a record of organizations.",
    "connec.organizations.updated": "An app changed a record of organizations.",
    "connec.organizations.deleted": "An app deleted a record of organizations.",
    "connec.people.created": "An app created a record of people.",
    "connec.people.updated": "An app changed a record of people.",
    "connec.people.deleted": "An app deleted a record of people.",
    "connec.items.created": "An app created a record of items.",
    "connec.items.updated": "An app changed a record of items.",
    "connec.items.deleted": "An app deleted a record of items.",
    "connec.invoices.created": "An app created a record of invoices.",
    "connec.invoices.updated": "An app changed a record of invoices.",
    "connec.invoices.deleted": "An app deleted a record of invoices.",
    "connec.payments.created": "An app created a record of payments.",
    "connec.payments.updated": "An app changed a record of payments.",
    "connec.payments.deleted": "An app deleted a record of payments.",
    "connec.opportunities.created": "An app created a record of opportunities.",
    "connec.opportunities.updated": "An app changed a record of opportunities.",
    "connec.opportunities.deleted": "An app deleted a record of opportunities.",
    "connec.employees.created": "An app created a record of employees.",
    "connec.employees.updated": "An app changed a record of employees.",
    "connec.employees.deleted": "An app deleted a record of employees.",
    # agents (on-demand work)
    "request.queued": (
        "On-demand work was queued for an agent (payload: id, kind, args), e.g. "
        "`mno billing run --async`."
    ),
    "request.finished": (
        "An agent finished on-demand work (payload: id, kind, status done|failed, result, error)."
    ),
    # the store itself
    "store.backed_up": "A backup of the store was written (payload: path, format, bytes).",
    "store.restored": "The store's contents were replaced from a backup (payload: source).",
}


def is_known(event_type: str) -> bool:
    return event_type in CATALOGUE


def matches(pattern: str, event_type: str) -> bool:
    """Dotted-type matching with ``*`` wildcards: ``tenant.*`` matches ``tenant.created``."""
    return fnmatchcase(event_type, pattern)
