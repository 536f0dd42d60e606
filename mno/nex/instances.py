"""Hosted app instances: the records and desired-state changes the CLI makes.

Every command here only records what the operator wants (``desired``, a pending
``action``, new image or env) and marks the instance for the provisioner, which does the
Docker work (``mno.nex.reconcile``). Statuses follow Maestrano's app instances::

    staged → provisioning → starting → running ⇄ stopping → stopped
    staged → pending_capacity (no host has room) → provisioning …
    running → updating → running;   any → terminating → terminated;   any → failed
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.orm import object_session
from sqlmodel import Session, col, func, select

from mno import clock, platform, secrets, validate
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.store import audit, lookup, outbox, wake
from mno.store.models.nex import Instance, InstanceDomain
from mno.store.models.tenancy import App, Tenant
from mno.tenancy import apps, tenants

STATUSES = (
    "staged",
    "pending_capacity",
    "provisioning",
    "starting",
    "running",
    "stopping",
    "stopped",
    "updating",
    "terminating",
    "terminated",
    "failed",
)
DESIRED = ("running", "stopped", "terminated")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TENANT_OK = ("pending_provision", "provisioning", "provision_failed", "active")
WAKE = "nex_instance"  # the wake-up channel of the provisioner (mno.store.wake)


WORK_COLUMNS = {
    "work",
    "lease_owner",
    "lease_until",
    "attempts",
    "next_attempt_at",
    "spec_version",
    "applied_version",
}


def audited(inst: Instance) -> dict[str, Any]:
    """The instance's audited fields (without the provisioner's queue bookkeeping)."""
    return {k: v for k, v in audit.snapshot(inst).items() if k not in WORK_COLUMNS}


@dataclass
class InstanceView:
    instance: Instance
    tenant_key: str
    app_code: str
    domains: list[str]

    def as_dict(self) -> dict[str, Any]:
        i = self.instance
        return {
            "id": str(i.id),
            "name": i.name,
            "tenant": self.tenant_key,
            "app": self.app_code,
            "status": i.status,
            "desired": i.desired,
            "action": i.action,
            "host": i.host,
            "container_id": i.container_id,
            "deploy": i.deploy,
            "url": i.url,
            "endpoint": i.endpoint,
            "domains": self.domains,
            "image": i.image,
            "env": dict(i.env or {}),
            "memory": i.memory,
            "cpus": i.cpus,
            "pids": i.pids,
            "volume": i.volume,
            "previous_volume": i.previous_volume,
            "previous_volume_until": audit.jsonable(i.previous_volume_until),
            "network": i.network,
            "started_at": audit.jsonable(i.started_at),
            "stopped_at": audit.jsonable(i.stopped_at),
            "terminated_at": audit.jsonable(i.terminated_at),
            "last_error": i.last_error,
            "attempts": i.attempts,
            "drift": i.drift,
            "replicas": i.replicas,
            # swarm: running/desired tasks as last seen (None on the docker runtime)
            "tasks": None if i.tasks_running is None else f"{i.tasks_running}/{i.replicas}",
            "tasks_running": i.tasks_running,
            "task_error": i.task_error,
            "created_at": audit.jsonable(i.created_at),
        }


def payload(
    inst: Instance, tenant_key: str | None = None, app_code: str | None = None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(inst.id),
        "name": inst.name,
        "status": inst.status,
        "host": inst.host,
        "url": inst.url,
    }
    if tenant_key:
        data["tenant"] = tenant_key
    if app_code:
        data["app"] = app_code
    return data


def get(session: Session, ref: str | uuid.UUID) -> Instance:
    """An instance by live name or id (a terminated one only by id)."""
    inst = None
    if isinstance(ref, uuid.UUID):
        inst = session.get(Instance, ref)
    else:
        inst = session.exec(select(Instance).where(Instance.live_name == str(ref))).first()
        if inst is None:
            inst = lookup.find(session, Instance, ref, "instance")
    if inst is None:
        raise NotFound(f"instance {ref} not found", "see `mno instance list`")
    return inst


def domains_of(session: Session, inst: Instance) -> list[str]:
    rows = session.exec(
        select(InstanceDomain.domain).where(InstanceDomain.instance_id == inst.id)
    ).all()
    return sorted(rows)


def view(session: Session, inst: Instance) -> InstanceView:
    tenant = session.get(Tenant, inst.tenant_id)
    app = session.get(App, inst.app_id)
    return InstanceView(
        inst, tenant.key if tenant else "?", app.code if app else "?", domains_of(session, inst)
    )


def _label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _default_name(session: Session, app: App, tenant: Tenant) -> str:
    base = _label(f"{app.code}-{tenant.key}")[:56].strip("-")
    if not app.multi_instantiable:
        return base
    taken = set(
        session.exec(select(Instance.name).where(col(Instance.name).startswith(base + "-"))).all()
    )
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def check_env(env: dict[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (env or {}).items():
        if not _ENV_NAME.match(key):
            raise BadInput(f"invalid env name {key!r}")
        value = str(value)
        if secrets.is_ref(value):
            secrets.check_name(secrets.ref_name(value))
        out[key] = value
    return out


def _check_domain_free(session: Session, domain: str, inst_id: uuid.UUID | None = None) -> str:
    domain = validate.domain(domain)
    row = session.exec(select(InstanceDomain).where(InstanceDomain.domain == domain)).first()
    if row is not None and row.instance_id != inst_id:
        raise Conflict(f"domain {domain} is already routed to another instance")
    return domain


def create(
    session: Session,
    tenant_key: str,
    app_code: str,
    *,
    name: str | None = None,
    domains: list[str] | None = None,
    env: dict[str, str] | None = None,
    memory: str | None = None,
    cpus: str | None = None,
    pids: int | None = None,
    config: platform.PlatformConfig | None = None,
) -> Instance:
    """Record a new instance (``staged``, desired ``running``) for the provisioner."""
    tenant = tenants.get(session, tenant_key)
    app = apps.get(session, app_code)
    config = config or platform.load()
    tier = config.tier(tenant.tier)
    _check_may_create(session, tenant, app, named=name is not None)
    _check_tier_room(session, tenant, tier)
    name = (
        validate.dns_label(name, "instance name") if name else _default_name(session, app, tenant)
    )
    if session.exec(select(Instance).where(Instance.live_name == name)).first():
        raise Conflict(f"instance {name} already exists")
    clean_domains = _free_domains(session, domains or [])
    inst = Instance(
        name=name,
        live_name=name,
        tenant_id=tenant.id,
        app_id=app.id,
        image=str(app.image),
        port=int(app.port or 0),
        health_path=app.health_path,
        volume_path=app.volume_path,
        url=f"{'https' if config.edge else 'http'}://{name}.{config.apps_domain}",
        env=check_env(env),
        # a flag wins over the tier's limits, which win over the app's own
        memory=apps.parse_memory(memory) or apps.parse_memory(tier.memory) or app.memory,
        cpus=apps.parse_cpus(cpus) or (str(tier.cpus) if tier.cpus else None) or app.cpus,
        pids=_check_pids(pids) or tier.pids,
    )
    session.add(inst)
    session.flush()
    for d in clean_domains:
        session.add(InstanceDomain(instance_id=inst.id, domain=d))
    audit.record(
        session,
        "instance.create",
        target_type="instance",
        target_id=inst.id,
        target=name,
        after=audited(inst) | {"domains": clean_domains},
        tenant_id=tenant.id,
    )
    outbox.emit(session, "instance.created", payload(inst, tenant.key, app.code), tenant.id)
    wake.notify(session, WAKE)
    session.flush()
    return inst


def _check_may_create(session: Session, tenant: Tenant, app: App, *, named: bool) -> None:
    """Refuse an instance the app's stack, the tenant's status or access rules forbid, or
    a second unnamed one of an app that is not multi-instantiable."""
    if app.stack != "nex":
        raise BadInput(f"app {app.code} is on stack {app.stack}, not nex", "only nex apps run here")
    if tenant.status not in TENANT_OK:
        raise InvalidTransition(f"tenant {tenant.key} is {tenant.status}; it cannot get instances")
    allowed, why = apps.check_access(session, app, tenant)
    if not allowed:
        raise BadInput(f"tenant {tenant.key} may not use {app.code}: {why}")
    if not app.multi_instantiable and not named:
        existing = session.exec(
            select(Instance).where(
                Instance.tenant_id == tenant.id,
                Instance.app_id == app.id,
                col(Instance.live_name).is_not(None),
            )
        ).first()
        if existing is not None:
            raise Conflict(
                f"{tenant.key} already has an instance of {app.code}: {existing.name}",
                f"{app.code} is not multi-instantiable",
            )


def _check_tier_room(session: Session, tenant: Tenant, tier: platform.TierConfig) -> None:
    """Refuse an instance beyond the ``max_instances`` of the tenant's tier."""
    if tier.max_instances is None:
        return
    live = session.exec(
        select(func.count()).where(
            Instance.tenant_id == tenant.id, col(Instance.live_name).is_not(None)
        )
    ).one()
    if int(live) >= tier.max_instances:
        raise Conflict(
            f"tenant {tenant.key} has {live} instances, the limit of tier {tenant.tier}",
            "terminate one, or raise max_instances of the tier in the platform YAML",
        )


def _free_domains(session: Session, domains: list[str]) -> list[str]:
    """The domains checked and deduplicated, each free to route to a new instance."""
    clean: list[str] = []
    for d in domains:
        d = _check_domain_free(session, d)
        if d not in clean:
            clean.append(d)
    return clean


def _check_pids(pids: int | None) -> int | None:
    if pids is None:
        return None
    if not 1 <= int(pids) <= 1_000_000:
        raise BadInput(f"invalid pids limit {pids}", "1 to 1000000")
    return int(pids)


def enqueue(inst: Instance) -> None:
    """Mark an instance for the provisioner: its desired state changed. The provisioner
    is woken when the transaction commits (``mno.store.wake``)."""
    inst.spec_version += 1
    inst.work = "pending"
    inst.attempts = 0
    inst.next_attempt_at = clock.now()
    inst.touch()
    session = object_session(inst)
    if session is not None:
        wake.notify(cast("Session", session), WAKE)


def outcome(inst: Instance, version: int) -> str:
    """How the change that made spec ``version`` went: ``done`` (it, or a later change, is
    applied), ``failed`` (an attempt at it failed; a retry may follow) or ``pending``.
    A failure recorded before that change does not count."""
    if inst.applied_version >= version and inst.work != "pending":
        return "done"
    if inst.applied_version >= version and inst.status != "failed" and inst.lease_owner is None:
        return "done"  # applied; a later change (e.g. a drift repair) is queued
    if inst.work == "failed":
        return "failed"
    tried = inst.attempts >= 1 and inst.lease_owner is None
    if inst.work == "pending" and tried and inst.status == "failed":
        return "failed"
    return "pending"


def _change(
    session: Session,
    ref: str,
    verb: str,
    *,
    desired: str | None = None,
    action: str | None = None,
    allowed_from: tuple[str, ...] | None = None,
    fields: dict[str, Any] | None = None,
) -> Instance:
    inst = get(session, ref)
    if inst.desired == "terminated" or inst.status == "terminated":
        raise InvalidTransition(f"instance {inst.name} is {inst.status}; it cannot {verb}")
    if allowed_from is not None and inst.status not in allowed_from:
        raise InvalidTransition(
            f"instance {inst.name} is {inst.status}; it cannot {verb}",
            f"{verb} works from: {', '.join(allowed_from)}",
        )
    before = audited(inst)
    if desired is not None:
        inst.desired = desired
    if action is not None:
        inst.action = action
    for key, value in (fields or {}).items():
        setattr(inst, key, value)
    enqueue(inst)
    session.add(inst)
    audit.record(
        session,
        f"instance.{verb}",
        target_type="instance",
        target_id=inst.id,
        target=inst.name,
        before=before,
        after=audited(inst),
        tenant_id=inst.tenant_id,
    )
    outbox.emit(
        session,
        "instance.updated",
        payload(inst) | {"change": verb, "desired": inst.desired},
        inst.tenant_id,
    )
    session.flush()
    return inst


def start(session: Session, ref: str) -> Instance:
    return _change(session, ref, "start", desired="running")


def stop(session: Session, ref: str) -> Instance:
    return _change(session, ref, "stop", desired="stopped")


def restart(session: Session, ref: str) -> Instance:
    return _change(
        session,
        ref,
        "restart",
        desired="running",
        action="restart",
        allowed_from=("running", "failed", "starting"),
    )


def update(
    session: Session,
    ref: str,
    *,
    image: str | None = None,
    env: dict[str, str] | None = None,
    unset_env: list[str] | None = None,
) -> Instance:
    """A new image and/or env; the provisioner rolls it out (rolling without a volume,
    stop-first with one)."""
    inst = get(session, ref)
    fields: dict[str, Any] = {}
    if image is not None:
        if not image.strip() or any(c.isspace() for c in image):
            raise BadInput(f"invalid image {image!r}")
        fields["image"] = image.strip()
    if env or unset_env:
        merged = dict(inst.env or {})
        merged.update(check_env(env))
        for key in unset_env or []:
            merged.pop(key, None)
        fields["env"] = merged
    if not fields:
        raise BadInput("nothing to update", "give --image and/or --env")
    return _change(session, ref, "update", action="update", fields=fields)


MAX_REPLICAS = 100


def scale(session: Session, ref: str, replicas: int) -> Instance:
    """Record the desired number of replicas of an instance on a swarm host (its
    service's tasks); the provisioner scales the service. Refused for an instance with a
    data volume (one volume has one writer) beyond one replica."""
    inst = get(session, ref)
    if not 0 <= int(replicas) <= MAX_REPLICAS:
        raise BadInput(f"invalid replicas {replicas}", f"0 to {MAX_REPLICAS}")
    if inst.volume_path and replicas > 1:
        raise BadInput(
            f"instance {inst.name} has a data volume; it runs one replica",
            "a volume has a single writer",
        )
    if not _on_swarm(inst.host):
        where = f"host {inst.host}, which is not a swarm" if inst.host else "no swarm host"
        raise BadInput(
            f"instance {inst.name} cannot scale: {where}",
            "replicas need a host with runtime: swarm in the platform YAML",
        )
    return _change(session, ref, "scale", action="scale", fields={"replicas": int(replicas)})


def _on_swarm(host: str | None) -> bool:
    """Whether ``host`` (None: any host yet to be chosen) is a swarm host."""
    return any(h.runtime == "swarm" and host in (None, h.name) for h in platform.load().hosts)


def terminate(
    session: Session, ref: str, *, purge_data: bool = False, backup: bool = False
) -> Instance:
    inst = get(session, ref)
    if inst.status == "terminated":
        return inst
    return _change(
        session,
        ref,
        "terminate",
        desired="terminated",
        fields={"purge_data": purge_data or inst.purge_data, "backup_on_terminate": backup},
    )


def add_domain(session: Session, ref: str, domain: str) -> Instance:
    inst = get(session, ref)
    domain = _check_domain_free(session, domain, inst.id)
    if domain in domains_of(session, inst):
        return inst
    session.add(InstanceDomain(instance_id=inst.id, domain=domain))
    session.flush()
    return _change(session, ref, "domain_add", action="update")


def remove_domain(session: Session, ref: str, domain: str) -> Instance:
    inst = get(session, ref)
    domain = validate.domain(domain)
    row = session.exec(
        select(InstanceDomain).where(
            InstanceDomain.instance_id == inst.id, InstanceDomain.domain == domain
        )
    ).first()
    if row is None:
        raise NotFound(f"domain {domain} is not routed to {inst.name}")
    session.delete(row)
    session.flush()
    return _change(session, ref, "domain_remove", action="update")


def list_instances(
    session: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    app: str | None = None,
    host: str | None = None,
    include_terminated: bool = False,
) -> list[InstanceView]:
    stmt = select(Instance, Tenant.key, App.code).join(Tenant, col(Tenant.id) == Instance.tenant_id)
    stmt = stmt.join(App, col(App.id) == Instance.app_id)
    if tenant:
        stmt = stmt.where(Instance.tenant_id == tenants.get(session, tenant).id)
    if app:
        stmt = stmt.where(Instance.app_id == apps.get(session, app).id)
    if host:
        stmt = stmt.where(Instance.host == host)
    if status:
        stmt = stmt.where(Instance.status == validate.one_of(status, STATUSES, "status"))
    elif not include_terminated:
        stmt = stmt.where(Instance.status != "terminated")
    rows = session.exec(stmt.order_by(Instance.name)).all()
    domains: dict[uuid.UUID, list[str]] = {}
    ids = [r[0].id for r in rows]
    if ids:
        for iid, d in session.exec(
            select(InstanceDomain.instance_id, InstanceDomain.domain).where(
                col(InstanceDomain.instance_id).in_(ids)
            )
        ).all():
            domains.setdefault(iid, []).append(d)
    return [InstanceView(i, t, a, sorted(domains.get(i.id, []))) for i, t, a in rows]


def live_for_tenant(session: Session, tenant_id: uuid.UUID) -> list[Instance]:
    return list(
        session.exec(
            select(Instance).where(
                Instance.tenant_id == tenant_id,
                col(Instance.live_name).is_not(None),
            )
        ).all()
    )
