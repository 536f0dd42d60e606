"""``kind: Connector`` and ``kind: Connection``: the sync area's declarative connectors and
the tenants' use of them.

A connector's ``metadata.name`` is its name and its spec is the connector document
(``mno.sync.spec.ConnectorSpec``) without ``name``. A connection's ``metadata.name`` is
``<tenant>/<connector>``. Every spec field can change in place through the sync domain
(``connections.update`` and ``set_paused``); a field changed by hand shows as drift.

Store models and domain modules are imported inside the methods that use them: the registry
imports every adapter, and a command that touches one kind should not build every area's
tables.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pydantic import Field, field_validator
from sqlmodel import col

from mno import validate
from mno.gitops.kinds.base import Kind, Spec, rule
from mno.store.types import table_of
from mno.sync import spec as specmod
from mno.sync.spec import ConnectorSpec

if TYPE_CHECKING:
    from sqlmodel import Session

_CONNECTOR = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


class ConnectorDocSpec(ConnectorSpec):
    """The connector document; ``metadata.name`` names it."""

    # the document names the connector in metadata.name, so the spec's own name is optional
    name: str | None = Field(  # type: ignore[assignment]  # optional here, required in the spec
        default=None, exclude=True, description="Ignored: metadata.name."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:  # type: ignore[override]  # no name check
        return value


class ConnectorKind(Kind):
    kind = "Connector"
    plural = "connectors"
    spec_model = ConnectorDocSpec
    description = "A declarative REST connector (entities, mapping, auth by secret:NAME)."
    depends_on = ("App",)

    def check_name(self, name: str) -> None:
        if not _CONNECTOR.match(name):
            raise ValueError(f"invalid connector name {name!r} (a-z, 0-9 and '-')")

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        from mno.store.models.sync import SyncConnector
        from mno.store.models.tenancy import App

        codes = dict(session.execute(sa.select(col(App.id), col(App.code))).all())
        out = {}
        for name, app_id, spec in session.execute(
            sa.select(col(SyncConnector.name), col(SyncConnector.app_id), col(SyncConnector.spec))
        ):
            data = ConnectorDocSpec.model_validate(dict(spec or {})).model_dump(mode="json")
            data["app"] = codes.get(app_id, data.get("app"))
            out[name] = data
        return out

    def _apply(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        model = ConnectorSpec.model_validate({**spec, "name": name})
        specmod.apply(session, model, source="gitops")

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        self._apply(session, name, spec)

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> None:
        current = self.current_one(session, name)
        self._apply(session, name, current | changes)

    def current_one(self, session: Session, name: str) -> dict[str, Any]:
        from mno.sync import connections

        row = connections.get_connector(session, name)
        return ConnectorDocSpec.model_validate(dict(row.spec or {})).model_dump(mode="json")


class ConnectionSpec(Spec):
    """A tenant's use of a connector; ``metadata.name`` is ``<tenant>/<connector>``."""

    entities: list[str] | None = Field(default=None, description="Entities (default: all).")
    pull: bool = True
    push: bool = True
    preemption: Literal["platform", "app"] | None = None
    credentials: dict[str, str] = Field(
        default_factory=dict, description="Per-tenant credentials as secret:NAME references."
    )
    base_url: str | None = None
    paused: bool = False

    @field_validator("credentials")
    @classmethod
    def _refs(cls, value: dict[str, str]) -> dict[str, str]:
        for key, ref in value.items():
            if not ref.startswith("secret:"):
                raise ValueError(f"credential {key} must be a secret reference like secret:NAME")
        return value


class ConnectionKind(Kind):
    kind = "Connection"
    plural = "connections"
    spec_model = ConnectionSpec
    description = "A tenant's connection to a connector; name = <tenant>/<connector>."
    depends_on = ("Tenant", "App", "Connector")

    def check_name(self, name: str) -> None:
        tenant, sep, connector = name.partition("/")
        if not sep:
            raise ValueError("a connection is named <tenant>/<connector>")
        rule(validate.tenant_key, tenant)
        if not _CONNECTOR.match(connector):
            raise ValueError(f"invalid connector name {connector!r}")

    def refs(self, name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
        tenant, _, connector = name.partition("/")
        return [("Tenant", tenant), ("Connector", connector)]

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        from mno.store.models.sync import SyncConnection

        out = {}
        for r in session.execute(sa.select(table_of(SyncConnection))):
            out[r.name] = {
                "entities": list(r.entities or []),
                "pull": bool(r.pull_enabled),
                "push": bool(r.push_enabled),
                "preemption": r.preemption,
                "credentials": dict(r.credentials or {}),
                "base_url": r.base_url,
                "paused": bool(r.paused),
            }
        return out

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        from mno.sync import connections

        tenant, _, connector = name.partition("/")
        connections.add(
            session,
            tenant,
            connector,
            entities=spec.get("entities"),
            push=spec.get("push", True),
            pull=spec.get("pull", True),
            preemption=spec.get("preemption"),
            credentials=spec.get("credentials") or {},
            base_url=spec.get("base_url"),
        )
        if spec.get("paused"):
            connections.set_paused(session, name, True)

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> None:
        from mno.sync import connections

        fields = {k: v for k, v in changes.items() if k != "paused"}
        if "entities" in fields and fields["entities"] is None:
            fields["entities"] = self._all_entities(session, name)
        if "credentials" in fields:
            fields["credentials"] = fields["credentials"] or {}
        if fields:
            connections.update(session, name, **fields)
        if "paused" in changes:
            connections.set_paused(session, name, bool(changes["paused"]))

    @staticmethod
    def _all_entities(session: Session, name: str) -> list[str]:
        from mno.sync import connections

        connector = connections.get_connector(session, name.partition("/")[2])
        return [e.canonical for e in specmod.of(connector).entities]

    def delete(self, session: Session, name: str) -> None:
        from mno.sync import connections

        connections.remove(session, name)
