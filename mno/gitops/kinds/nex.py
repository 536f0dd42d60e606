"""``kind: DockerHost`` and ``kind: Instance``: where Nex runs apps, and what it runs.

**DockerHost**: ``metadata.name`` is the host name. The spec has the fields of a host in
the platform YAML (``mno.platform.HostConfig``) and writes go through ``mno.nex.hosts``, so
every agent that shares the store places on it at once, with no file to copy to each
machine. A host is declared in one place only: a name listed in the platform YAML is
refused. Prune removes a host only when no live instance is placed on it.

**Instance**: a tenant's hosted instance of a Nex app; ``metadata.name`` is the instance
name. Applying one only records the desired state through ``mno.nex.instances`` (created,
started, stopped, new env or domains); the provisioner agent does the Docker work. The
tenant, the app and the resource limits are fixed at creation. Pruning an instance
terminates it and keeps its data volume (``mno instance terminate --purge-data`` removes
it by hand).

Store models and domain modules are imported inside the methods that use them: the registry
imports every adapter, and a command that touches one kind should not build every area's
tables.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import Field, field_validator
from sqlmodel import col

from mno import platform, validate
from mno.gitops.kinds.base import Kind, Spec, rule
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SCHEMES = ("unix://", "tcp://", "ssh://", "http://", "https://")


class DockerHostSpec(Spec):
    """A Docker engine Nex may place instances on."""

    base_url: str = Field(
        default="unix:///var/run/docker.sock",
        description="The engine: unix://, tcp:// or ssh:// as docker takes it.",
    )
    publish_address: str = Field(
        default="127.0.0.1", description="Where container ports are published."
    )
    memory: str | None = Field(default=None, description="Capacity, e.g. 8g (none: unlimited).")
    max_instances: int | None = Field(default=None, ge=0, description="At most this many.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels an app's labels must match to be placed here."
    )
    timeout: int = Field(default=30, ge=1, le=600, description="Seconds per Docker API call.")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not v.startswith(_SCHEMES):
            raise ValueError(f"invalid base_url {v!r} (unix://, tcp:// or ssh://)")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        from mno.tenancy.apps import parse_memory

        return rule(parse_memory, v)


class DockerHostKind(Kind):
    kind = "DockerHost"
    plural = "docker-hosts"
    spec_model = DockerHostSpec
    description = "A Docker host for Nex instances, kept in the store; name = host name."

    def check_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid host name {name!r} (a-z, 0-9 and '-', up to 63)")

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        from mno.nex import hosts

        return {
            h.name: DockerHostSpec.model_validate(
                h.model_dump(exclude={"name", "runtime"})
            ).model_dump(mode="json")
            for h in hosts.stored(session)
        }

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        self.create_many(session, [(name, spec)])

    def create_many(
        self, session: Session, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> dict[str, str]:
        from mno.nex import hosts

        config = platform.load()
        for name, spec in items:
            hosts.add(session, name, config, **spec)
        return {}

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> None:
        from mno.nex import hosts

        hosts.update(session, name, **changes)

    def delete(self, session: Session, name: str) -> None:
        from mno.nex import hosts

        hosts.remove(session, name)


class InstanceSpec(Spec):
    """A hosted instance of a Nex app for a tenant."""

    tenant: str = Field(description="The tenant key.")
    app: str = Field(description="The code of a Nex app (stack: nex).")
    state: Literal["running", "stopped"] = Field(default="running", description="Desired.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment over the app's; secrets as secret:NAME."
    )
    domains: list[str] = Field(default_factory=list, description="Custom domains routed here.")
    memory: str | None = Field(default=None, description="Memory limit (default: the app's).")
    cpus: str | None = Field(default=None, description="CPU limit (default: the app's).")
    pids: int | None = Field(default=None, ge=1, le=1_000_000, description="Process limit.")

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return rule(validate.tenant_key, v)

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        from mno.nex.instances import check_env

        return rule(check_env, v)

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        clean = [rule(validate.domain, d) for d in v]
        if len(set(clean)) != len(clean):
            raise ValueError("a domain is listed twice")
        return sorted(clean)

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        from mno.tenancy.apps import parse_memory

        return rule(parse_memory, v)

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, v: object) -> str | None:
        from mno.tenancy.apps import parse_cpus

        return None if v is None else rule(parse_cpus, v)


class InstanceKind(Kind):
    kind = "Instance"
    plural = "instances"
    spec_model = InstanceSpec
    description = "A tenant's hosted instance of a Nex app; the provisioner runs it."
    depends_on = ("Tenant", "App", "DockerHost")
    immutable = ("tenant", "app", "memory", "cpus", "pids")

    def check_name(self, name: str) -> None:
        validate.dns_label(name, "instance name")

    def refs(self, name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
        return [("Tenant", spec["tenant"]), ("App", spec["app"])]

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        from mno.store.models.nex import Instance, InstanceDomain
        from mno.store.models.tenancy import App, Tenant

        keys = dict(session.execute(sa.select(col(Tenant.id), col(Tenant.key))).all())
        codes = dict(session.execute(sa.select(col(App.id), col(App.code))).all())
        rows = session.execute(
            sa.select(table_of(Instance)).where(
                col(Instance.live_name).is_not(None),
                col(Instance.desired) != "terminated",
            )
        ).all()
        ids = {r.id for r in rows}
        domains: dict[Any, list[str]] = {}
        for iid, domain in session.execute(
            sa.select(col(InstanceDomain.instance_id), col(InstanceDomain.domain))
        ):
            if iid in ids:
                domains.setdefault(iid, []).append(domain)
        return {
            r.name: {
                "tenant": keys.get(r.tenant_id),
                "app": codes.get(r.app_id),
                "state": r.desired,
                "env": dict(r.env or {}),
                "domains": sorted(domains.get(r.id, [])),
                "memory": r.memory,
                "cpus": r.cpus,
                "pids": r.pids,
            }
            for r in rows
        }

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        from mno.nex import instances

        instances.create(
            session,
            spec["tenant"],
            spec["app"],
            name=name,
            domains=spec.get("domains") or [],
            env=spec.get("env") or {},
            memory=spec.get("memory"),
            cpus=spec.get("cpus"),
            pids=spec.get("pids"),
            config=platform.load(),
        )
        if spec.get("state") == "stopped":
            instances.stop(session, name)

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> None:
        from mno.nex import instances

        if "env" in changes:
            have = dict(instances.get(session, name).env or {})
            want = changes["env"] or {}
            instances.update(
                session,
                name,
                env={k: v for k, v in want.items() if have.get(k) != v},
                unset_env=sorted(set(have) - set(want)),
            )
        if "domains" in changes:
            have_domains = set(instances.domains_of(session, instances.get(session, name)))
            want_domains = set(changes["domains"] or [])
            for domain in sorted(have_domains - want_domains):
                instances.remove_domain(session, name, domain)
            for domain in sorted(want_domains - have_domains):
                instances.add_domain(session, name, domain)
        if "state" in changes:
            if changes["state"] == "stopped":
                instances.stop(session, name)
            else:
                instances.start(session, name)

    def delete(self, session: Session, name: str) -> None:
        from mno.nex import instances

        instances.terminate(session, name)
