"""Tenant provisioning and offboarding, per tier mode (``tiers`` in the platform YAML,
``PlatformConfig.tier``).

- ``none``: the status moves to ``active`` at once (nothing is hosted for the tier);
- ``docker``: the tenant gets an instance of every Nex app it subscribes to or its tier
  lists; the provisioner creates them (and the network of a tenant whose tier has
  ``isolation: silo``). When all are running the tenant becomes ``active``; a failure
  makes it ``provision_failed`` with the reason, and a later success of every instance
  activates it after all. A subscription to a Nex app that starts or ends later is
  followed by ``subscription_changed``;
- ``external``: ``tenant.provisioning_requested`` carries a one-time callback secret
  (encrypted in the event, revealed only in the webhook body) and a context id; a
  pipeline elsewhere answers with a signed ``POST /v1/callbacks/provisioning``
  (``mno.nex.callbacks``).

Offboarding terminates the tenant's instances with a final backup of each volume under
``$MNO_HOME/backups/``, removes the tenant network and ends in ``offboarded``.
"""

from __future__ import annotations

import secrets as pysecrets
import uuid
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, func, select

from mno import clock, crypto, platform
from mno.errors import BadInput
from mno.nex import instances
from mno.settings import parse_duration
from mno.store import outbox
from mno.store.db import session_scope
from mno.store.models.billing import Subscription
from mno.store.models.nex import Instance, ProvisioningRequest
from mno.store.models.tenancy import App, Tenant
from mno.tenancy import apps, tenants

if TYPE_CHECKING:
    from mno.nex.snapshot import Snapshot


def tier_config(
    tenant: Tenant, config: platform.PlatformConfig | None = None
) -> platform.TierConfig:
    """The settings of the tenant's tier (``PlatformConfig.tier``)."""
    return (config or platform.load()).tier(tenant.tier)


def nex_apps_for(session: Session, tenant: Tenant, tier_apps: list[str]) -> list[str]:
    """The Nex apps a tenant gets: its tier's list plus the apps it subscribes to."""
    codes = list(tier_apps)
    try:
        subscribed = session.exec(
            select(Subscription.app_code).where(
                Subscription.tenant_id == tenant.id,
                col(Subscription.status).in_(SUBSCRIBED),
                col(Subscription.app_code).is_not(None),
            )
        ).all()
    except ImportError:  # billing not in this build
        subscribed = []
    codes.extend(str(c) for c in subscribed)
    out = []
    for code in dict.fromkeys(codes):
        app = session.exec(select(App).where(App.code == code)).first()
        if app is None:
            raise BadInput(f"tier {tenant.tier} lists unknown app {code}")
        if app.stack == "nex":
            out.append(code)
    return out


def provision(
    session: Session, key: str, config: platform.PlatformConfig | None = None
) -> dict[str, Any]:
    """Start provisioning a tenant in its tier's mode; returns what was done."""
    config = config or platform.load()
    tenant = tenants.get(session, key)
    tier = tier_config(tenant, config)
    if tier.mode == "none":
        tenants.provision(session, key)
        return {"tenant": tenant.key, "mode": "none", "status": tenant.status}
    tenant = tenants.transition(session, key, "provisioning")
    if tier.mode == "external":
        request = _external_request(session, tenant, tier)
        return {"tenant": tenant.key, "mode": "external", "status": tenant.status} | request
    codes = nex_apps_for(session, tenant, tier.apps)
    created, kept = [], []
    existing = {(i.app_id, i.name): i for i in instances.live_for_tenant(session, tenant.id)}
    have_apps = {app_id for app_id, _ in existing}

    for code in codes:
        app = apps.get(session, code)
        if app.id in have_apps:
            for (app_id, _), inst in existing.items():
                if app_id == app.id:
                    if inst.status == "failed" or inst.work == "failed":
                        instances.enqueue(inst)  # a retry of provisioning retries it
                        session.add(inst)
                    kept.append(inst.name)
            continue
        inst = instances.create(session, tenant.key, code, config=config)
        created.append(inst.name)
    session.flush()
    if not codes or _all_running(session, tenant.id):
        tenants.transition(session, tenant, "active")
    return {
        "tenant": tenant.key,
        "mode": "docker",
        "status": tenant.status,
        "instances_created": created,
        "instances_kept": kept,
    }


SUBSCRIBED = ("active", "trialing")


def subscription_changed(
    session: Session,
    tenant_id: uuid.UUID,
    app_code: str | None,
    config: platform.PlatformConfig | None = None,
) -> list[str]:
    """Follow a subscription to ``app_code`` that started or ended, in the transaction
    that records it; returns the instances created, started or stopped.

    Only a Nex app of a tenant whose tier is in ``docker`` mode and that is being or has
    been provisioned (``provisioning``, ``active``) is concerned; a tenant not provisioned
    yet gets its instances from ``provision``. When the app is wanted (the tier lists it
    or a subscription is active or trialing) the tenant gets an instance when it has none
    and a stopped one is started; the tenant's status does not change. When it is no
    longer wanted its instances are stopped: the containers, volumes and data stay until
    the operator terminates them (``mno instance terminate``)."""
    if not app_code:
        return []
    config = config or platform.load()
    tenant = session.get(Tenant, tenant_id)
    app = session.exec(select(App).where(App.code == app_code)).first()
    if tenant is None or app is None or app.stack != "nex":
        return []
    tier = config.tier(tenant.tier)
    if tier.mode != "docker" or tenant.status not in ("provisioning", "active"):
        return []
    mine = [i for i in instances.live_for_tenant(session, tenant.id) if i.app_id == app.id]
    if app_code in nex_apps_for(session, tenant, tier.apps):
        if not mine:
            return [instances.create(session, tenant.key, app_code, config=config).name]
        return [
            instances.start(session, str(i.id)).name
            for i in mine
            if i.desired == "stopped" and i.status != "terminating"
        ]
    return [instances.stop(session, str(i.id)).name for i in mine if i.desired == "running"]


def _all_running(session: Session, tenant_id: uuid.UUID) -> bool:
    live = instances.live_for_tenant(session, tenant_id)
    return bool(live) and all(i.status == "running" for i in live)


def on_instance(session: Session, inst: Instance) -> None:
    """React to an instance's new status (called in the transaction that records it)."""
    tenant = session.get(Tenant, inst.tenant_id)
    if tenant is None:
        return
    if inst.status == "running" and tenant.status in ("provisioning", "provision_failed"):
        if tier_config(tenant).mode != "docker" or not _all_running(session, tenant.id):
            return
        if tenant.status == "provision_failed":
            tenants.transition(session, tenant, "provisioning", "instances recovered")
        tenants.transition(session, tenant, "active")
    elif inst.status == "failed" and tenant.status == "provisioning":
        if tier_config(tenant).mode == "docker":
            reason = f"instance {inst.name}: {inst.last_error or 'failed'}"
            tenants.transition(session, tenant, "provision_failed", reason[:500])
    elif inst.status == "terminated" and tenant.status == "offboarding":
        if not instances.live_for_tenant(session, tenant.id):
            tenants.transition(session, tenant, "offboarded")


def last_on_host(snap: Snapshot, db_url: str | None = None) -> bool:
    """Whether this instance is the tenant's last live one on its host."""
    with session_scope(db_url, write=False) as s:
        others = s.exec(
            select(func.count()).where(
                Instance.tenant_id == snap.tenant_id,
                Instance.host == snap.host,
                Instance.id != snap.id,
                col(Instance.live_name).is_not(None),
            )
        ).one()
    return int(others) == 0


def offboard(session: Session, key: str) -> dict[str, Any]:
    """Terminate every instance (final backup kept), then ``offboarded`` (see module doc).

    With no live instance the tenant is offboarded at once; otherwise it stays in
    ``offboarding`` until the provisioner has terminated the last one."""
    tenant = tenants.transition(session, key, "offboarding")
    live = instances.live_for_tenant(session, tenant.id)
    for inst in live:
        instances.terminate(session, str(inst.id), purge_data=True, backup=True)
    if not live:
        tenants.transition(session, tenant, "offboarded")
    return {"tenant": tenant.key, "status": tenant.status, "terminating": [i.name for i in live]}


# -- external mode ------------------------------------------------------------------------


def _external_request(session: Session, tenant: Tenant, tier: Any) -> dict[str, Any]:
    secret = pysecrets.token_hex(32)
    context_id = uuid.uuid4().hex
    expires_at = clock.now() + parse_duration(tier.callback_ttl)
    seal = crypto.sealed(secret)
    request = ProvisioningRequest(
        tenant_id=tenant.id,
        context_id=context_id,
        secret_enc=seal[crypto.ENCRYPTED_KEY],
        expires_at=expires_at,
    )
    session.add(request)
    session.flush()
    outbox.emit(
        session,
        "tenant.provisioning_requested",
        {
            "tenantId": str(tenant.id),
            "tenant": tenant.key,
            "tier": tenant.tier,
            "contextId": context_id,
            # encrypted here; the webhook dispatcher reveals it in the delivered body only
            "callbackSecret": seal,
            "callbackPath": "/v1/callbacks/provisioning",
            "expiresAt": expires_at,
        },
        tenant.id,
    )
    return {"context_id": context_id, "expires_at": expires_at}
