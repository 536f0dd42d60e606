"""``kind: App``: an app of the catalogue with its access rule and explicit grants.

``metadata.name`` is the app code. The stack and the owner cannot change once created.
``grants`` are the app's direct grants (made by system); grants that came from a
package are left to the package.

Store models and domain modules are imported inside the methods that use them: the registry
imports every adapter, and a command that touches one kind should not build every area's
tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import Field, field_validator
from sqlmodel import col

from mno import validate
from mno.errors import BadInput, Conflict
from mno.gitops.kinds.base import Kind, Spec, blank_to_none, rule
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

TEXT_FIELDS = (
    "image",
    "health_path",
    "health_interval",
    "memory",
    "cpus",
    "volume_path",
    "thumbnail",
)


class AppGrantSpec(Spec):
    tenant: str = Field(description="Tenant key granted access (access: explicit).")
    can_edit: bool = False

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        return rule(validate.tenant_key, v)


class AppBackupSpec(Spec):
    every: str = Field(description="Backup interval of the app's instances, e.g. 6h or 1d.")

    @field_validator("every", mode="before")
    @classmethod
    def _every(cls, v: Any) -> str:
        from mno.tenancy.apps import check_every

        value = rule(check_every, None if v is None else str(v))
        if value is None:
            raise ValueError("must not be empty")
        return value


class AppSpec(Spec):
    """An app. Omitted fields are not managed by the document."""

    name: str = Field(description="Display name.")
    stack: Literal["cloud", "nex", "connector"] = "cloud"
    type: Literal["app", "site"] = "app"
    access: Literal["own", "any", "explicit"] = "own"
    owner: str | None = Field(default=None, description="Owner tenant key (default: system).")
    enabled: bool = True
    multi_instantiable: bool = False
    image: str | None = Field(default=None, description="Container image (nex apps).")
    port: int | None = Field(default=None, ge=1, le=65535, description="Container port.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment; secrets as secret:NAME."
    )
    health_path: str | None = None
    health_interval: str | None = Field(
        default=None,
        description="Seconds between health checks of a running instance, e.g. 10s (1s to 1h; "
        "default: the provisioner's health_interval).",
    )
    memory: str | None = Field(default=None, description="Memory limit, e.g. 256m.")
    cpus: str | None = Field(default=None, description="CPU limit, e.g. 0.5.")
    volume_path: str | None = None
    backup: AppBackupSpec | None = Field(
        default=None, description="Scheduled restic backups of the data volume (nex apps)."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    thumbnail: str | None = Field(default=None, description="Thumbnail image URL (https).")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free metadata shown with the app (4 KB at most)."
    )
    grants: list[AppGrantSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be empty")
        return v.strip()

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str | None) -> str | None:
        if v in (None, "system"):
            return None
        return rule(validate.tenant_key, v)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str | None:
        from mno.tenancy.apps import parse_memory

        return rule(parse_memory, None if v is None else str(v))

    @field_validator("health_interval", mode="before")
    @classmethod
    def _health_interval(cls, v: Any) -> str | None:
        from mno.tenancy.apps import parse_health_interval

        return rule(parse_health_interval, v)

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, v: Any) -> str | None:
        from mno.tenancy.apps import parse_cpus

        return rule(parse_cpus, v)

    @field_validator("health_path", "volume_path")
    @classmethod
    def _abs(cls, v: str | None) -> str | None:
        v = blank_to_none(v)
        if v is not None and not v.startswith("/"):
            raise ValueError("must start with /")
        return v

    @field_validator("thumbnail", mode="before")
    @classmethod
    def _thumbnail(cls, v: Any) -> str | None:
        from mno.tenancy.apps import check_thumbnail

        return rule(check_thumbnail, None if v is None else str(v))

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, v: Any) -> dict[str, Any]:
        from mno.tenancy.apps import check_metadata

        if v is not None and not isinstance(v, dict):
            raise ValueError("must be a mapping")
        return rule(check_metadata, v)

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        return blank_to_none(v)

    @field_validator("grants")
    @classmethod
    def _grants(cls, v: list[AppGrantSpec]) -> list[AppGrantSpec]:
        seen = set()
        for g in v:
            if g.tenant in seen:
                raise ValueError(f"tenant {g.tenant} is granted twice")
            seen.add(g.tenant)
        return sorted(v, key=lambda g: g.tenant)


class AppKind(Kind):
    kind = "App"
    plural = "apps"
    spec_model = AppSpec
    description = "An app of the catalogue with its access rule and grants; name = app code."
    depends_on = ("Tenant",)
    immutable = ("stack", "owner")

    def check_name(self, name: str) -> None:
        from mno.tenancy.apps import check_code

        check_code(name)

    def refs(self, name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
        out = [("Tenant", spec["owner"])] if spec.get("owner") else []
        return out + [("Tenant", g["tenant"]) for g in spec.get("grants") or []]

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        from mno.store.models.tenancy import App, AppGrant, Tenant

        keys = dict(session.execute(sa.select(col(Tenant.id), col(Tenant.key))).all())
        grants: dict[Any, list[dict[str, Any]]] = {}
        for app_id, tenant_id, can_edit in session.execute(
            sa.select(col(AppGrant.app_id), col(AppGrant.tenant_id), col(AppGrant.can_edit)).where(
                col(AppGrant.package_id).is_(None)
            )
        ):
            grants.setdefault(app_id, []).append(
                {"tenant": keys.get(tenant_id), "can_edit": bool(can_edit)}
            )
        out = {}
        for a in session.execute(sa.select(table_of(App))).all():
            owner = keys.get(a.owner_id)
            out[a.code] = {
                "name": a.name,
                "stack": a.stack,
                "type": a.type,
                "access": a.access,
                "owner": None if owner in (None, "system") else owner,
                "enabled": bool(a.enabled),
                "multi_instantiable": bool(a.multi_instantiable),
                "image": a.image or None,
                "port": a.port,
                "env": dict(a.env or {}),
                "health_path": a.health_path or None,
                "health_interval": a.health_interval or None,
                "memory": a.memory or None,
                "cpus": a.cpus or None,
                "volume_path": a.volume_path or None,
                "backup": {"every": a.backup_every} if a.backup_every else None,
                "labels": dict(a.labels or {}),
                "thumbnail": a.thumbnail or None,
                "metadata": dict(a.meta or {}),
                "grants": sorted(grants.get(a.id, []), key=lambda g: g["tenant"] or ""),
            }
        return out

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        self.create_many(session, [(name, spec)])

    def create_many(
        self, session: Session, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> dict[str, str]:
        from mno.tenancy import apps

        apps.create_many(
            session,
            [
                {k: v for k, v in spec.items() if k not in ("grants", "backup")}
                | {"code": name, "backup_every": (spec.get("backup") or {}).get("every")}
                for name, spec in items
            ],
        )
        for name, spec in items:
            for g in spec.get("grants") or []:
                apps.grant(session, name, g["tenant"], can_edit=g.get("can_edit", False))
        return {}

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> None:
        from mno.tenancy import apps

        fields = dict(changes)
        for key in self.immutable:
            if key in fields:
                raise BadInput(f"App/{name}: spec.{key} cannot change", "create a new app instead")
        grants = fields.pop("grants", None)
        enabled = fields.pop("enabled", None)
        if "backup" in fields:
            fields["backup_every"] = (fields.pop("backup") or {}).get("every") or ""
        for key in TEXT_FIELDS:
            if key in fields and fields[key] is None:
                fields[key] = ""  # the domain skips None; "" clears the field
        if "port" in fields and fields["port"] is None:
            raise BadInput(f"App/{name}: the port cannot be cleared", "give a port")
        if fields:
            apps.update(session, name, **fields)
        if enabled is not None:
            apps.set_enabled(session, name, enabled)
        if grants is not None:
            current = self.current_grants(session, name)
            wanted = {g["tenant"]: g.get("can_edit", False) for g in grants}
            for tenant, can_edit in wanted.items():
                if current.get(tenant) != can_edit:
                    apps.grant(session, name, tenant, can_edit=can_edit)
            for tenant in current:
                if tenant not in wanted:
                    apps.revoke(session, name, tenant)

    @staticmethod
    def current_grants(session: Session, code: str) -> dict[str, bool]:
        from mno.tenancy import apps

        return {
            g["tenant"]: g["can_edit"]
            for g in apps.view(session, apps.get(session, code)).grants
            if g["package"] is None
        }

    def delete(self, session: Session, name: str) -> None:
        from mno.tenancy import apps

        remove = getattr(apps, "delete", None)
        if remove is None:
            raise Conflict(
                f"App/{name} cannot be deleted: the catalogue has no delete",
                "set spec.enabled: false instead",
            )
        remove(session, name)
