"""Recording an instance's status: one change per short transaction, fenced on the lease.

``record()`` opens its own transaction and refuses (``LeaseLost``) when the instance is no
longer leased to the caller; ``apply()`` works in the caller's transaction. A status change
writes its audit row, emits the matching ``instance.*`` event and lets tenant provisioning
react (``mno.nex.provisioning.on_instance``). A terminated instance releases its domains.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from mno.errors import MnoError
from mno.nex import provisioning, runtime_docker, waiting
from mno.store import audit, outbox
from mno.store.db import session_scope
from mno.store.models.nex import Instance, InstanceDomain

if TYPE_CHECKING:
    from mno.nex.snapshot import Snapshot

EVENTS = {
    "provisioning": "instance.provisioning",
    "running": "instance.running",
    "failed": "instance.failed",
    "pending_capacity": "instance.pending_capacity",
    "stopped": "instance.stopped",
    "terminated": "instance.terminated",
}


class LeaseLost(MnoError):
    """Another process took the instance over; stop working on it."""


def record(
    instance_id: uuid.UUID,
    owner: str | None,
    *,
    status: str | None = None,
    db_url: str | None = None,
    **fields: Any,
) -> None:
    """One status change (and/or field updates) in one transaction, fenced on the lease."""
    with session_scope(db_url) as s:
        inst = s.get(Instance, instance_id)
        if inst is None:
            raise LeaseLost(f"instance {instance_id} is gone")
        if owner is not None and inst.lease_owner != owner:
            raise LeaseLost(f"instance {inst.name} is no longer leased to this process")
        apply(s, inst, status, **fields)


def release_domains(session: Any, inst: Any) -> list[str]:
    """Free a terminated instance's domains, so that another instance may take them."""
    rows = list(session.exec(select(InstanceDomain).where(InstanceDomain.instance_id == inst.id)))
    for row in rows:
        session.delete(row)
    return sorted(r.domain for r in rows)


def endpoint_changed(session: Any, inst: Any, before: str | None) -> None:
    """The audit row and ``instance.endpoint_changed`` event of a running instance whose
    container now answers on another address (a restart outside mno publishes a new host
    port); routers follow the event or re-read ``endpoint``."""
    audit.record(
        session,
        "instance.endpoint_changed",
        target_type="instance",
        target_id=inst.id,
        target=inst.name,
        before={"endpoint": before},
        after={"endpoint": inst.endpoint},
        tenant_id=inst.tenant_id,
        actor="provisioner",
    )
    outbox.emit(
        session,
        "instance.endpoint_changed",
        {
            "id": str(inst.id),
            "name": inst.name,
            "host": inst.host,
            "url": inst.url,
            "endpoint": inst.endpoint,
            "previous": before,
        },
        inst.tenant_id,
    )


def apply(session: Any, inst: Any, status: str | None, **fields: Any) -> None:
    """Set fields and the status in the caller's transaction. A status change writes an
    audit row, emits the matching ``instance.*`` event and lets tenant provisioning react
    (``mno.nex.provisioning.on_instance``)."""
    before = inst.status
    before_endpoint = inst.endpoint
    for key, value in fields.items():
        setattr(inst, key, value)
    if status is not None:
        inst.status = status
    inst.touch()
    session.add(inst)
    if status is None or status == before:
        if inst.endpoint != before_endpoint and inst.status == "running":
            endpoint_changed(session, inst, before_endpoint)
        return
    released = release_domains(session, inst) if status == "terminated" else []
    audit.record(
        session,
        "instance.status",
        target_type="instance",
        target_id=inst.id,
        target=inst.name,
        before={"status": before},
        after={
            "status": status,
            **({"error": inst.last_error} if status == "failed" else {}),
            **({"released_domains": released} if released else {}),
        },
        tenant_id=inst.tenant_id,
        actor="provisioner",
    )
    event = EVENTS.get(status)
    if event:
        data = {
            "id": str(inst.id),
            "name": inst.name,
            "status": status,
            "host": inst.host,
            "url": inst.url,
            "endpoint": inst.endpoint,
        }
        if status == "failed":
            data["error"] = inst.last_error
        if released:
            data["released_domains"] = released
        outbox.emit(session, event, data, inst.tenant_id)
    session.flush()
    if status == "terminated" and inst.host:  # its room may take a waiting instance
        waiting.room_appeared(session)
    provisioning.on_instance(session, inst)


def rolled_back(
    snap: Snapshot,
    owner: str,
    old_endpoint: str | None,
    old_image: str | None,
    exc: MnoError,
    db_url: str | None,
) -> None:
    """Record a failed update: the old container (or service version) serves at
    ``old_endpoint``, the desired spec is the one it
    runs (unless a newer change came meanwhile), why is in ``last_error``; with its audit
    row and an ``instance.update_failed`` event (one transaction)."""
    reason = exc.message
    gate = "failed its health check"
    if reason.startswith("health check failed: "):
        reason = reason.removeprefix("health check failed: ")
    elif isinstance(exc, runtime_docker.DockerFailure):
        gate = "could not start"
    elif not reason.startswith("not healthy"):
        gate = "failed"
    message = f"update to {snap.image} {gate}; rolled back to deploy {snap.deploy}: {reason}"
    with session_scope(db_url) as s:
        inst = s.get(Instance, snap.id)
        if inst is None or inst.lease_owner != owner:
            raise LeaseLost(f"instance {snap.name} is no longer leased to this process")
        before = {"image": inst.image, "env": dict(inst.env or {}), "deploy": snap.deploy + 1}
        fields: dict[str, Any] = {
            "endpoint": old_endpoint,
            "action": None,
            "last_error": message[:2000],
        }
        if inst.spec_version == snap.spec_version:  # no newer change to keep
            previous = snap.deployed or {"image": old_image or inst.image, "env": inst.env}
            fields["image"] = previous["image"]
            fields["env"] = dict(previous.get("env") or {})
        apply(s, inst, "running", **fields)
        audit.record(
            s,
            "instance.rollback",
            target_type="instance",
            target_id=inst.id,
            target=inst.name,
            before=before,
            after={"image": inst.image, "env": dict(inst.env or {}), "deploy": inst.deploy},
            tenant_id=inst.tenant_id,
            actor="provisioner",
        )
        outbox.emit(
            s,
            "instance.update_failed",
            {
                "id": str(inst.id),
                "name": inst.name,
                "image": snap.image,
                "error": message[:2000],
                "rolled_back_to": inst.deploy,
                "endpoint": inst.endpoint,
            },
            inst.tenant_id,
        )
