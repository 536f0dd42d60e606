"""The apps catalogue (MnoHub apps) and who may use them (nocode-saas access model).

Each app has a unique ``code`` (a slug of its name unless given), a ``stack``
(``cloud`` for SaaS apps reached over the network, ``nex`` for apps hosted per tenant on
Docker, ``connector`` for data connectors), a ``type`` and an access rule:

- ``own``: only the owner tenant and ``system``;
- ``any``: the owner and every tenant it manages, directly or below;
- ``explicit``: only tenants granted access, plus the owner and ``system``.

A grant gives one tenant ``read`` (use the app) or ``edit`` (``can_edit``: also change
the app) whatever the access rule, ``own`` included. Only the owner or ``system`` may
grant (``by``: the tenant acting, ``None`` for the platform operator, who acts as
``system``); the grant records who gave it. Grants that came from a package
(``mno.tenancy.packages``) name it and go when the package is revoked.

``check_access(..., need="edit")`` asks for the right to change the app: the owner,
``system`` and tenants with an edit grant have it; ``any`` alone gives only ``read``.

The owner and the code never change after creation. An app may carry a thumbnail
(an https URL) and a small JSON ``metadata`` object, shown to the tenants that see it.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import SQLModel, col, select

from mno import validate
from mno.errors import BadInput, Conflict, Forbidden, InvalidTransition, NotFound
from mno.store import audit, lookup, outbox, paging
from mno.store.models import load_all
from mno.store.models.tenancy import App, AppGrant, AppPackage, AppPackageApp, Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

STACKS = ("cloud", "nex", "connector")
TYPES = ("app", "site")
ACCESS = ("own", "any", "explicit")
NEEDS = ("read", "edit")
THUMBNAIL_MAX = 500
METADATA_MAX = 4096  # bytes of compact JSON
_CODE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_MEMORY = re.compile(r"^\d+(?:\.\d+)?[bkmg]?$", re.I)
NEX_FIELDS = (
    "image",
    "port",
    "env",
    "health_path",
    "health_interval",
    "memory",
    "cpus",
    "volume_path",
    "backup_every",
)
HEALTH_INTERVAL_RANGE = (1.0, 3600.0)  # seconds
UPDATABLE = (
    "name",
    "type",
    "access",
    "multi_instantiable",
    "labels",
    "thumbnail",
    "metadata",
    *NEX_FIELDS,
)
IMMUTABLE = ("owner", "code", "stack")


@dataclass
class AppView:
    app: App
    owner_key: str
    grants: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        a = self.app
        return {
            "id": str(a.id),
            "code": a.code,
            "name": a.name,
            "stack": a.stack,
            "type": a.type,
            "access": a.access,
            "owner": self.owner_key,
            "enabled": a.enabled,
            "multi_instantiable": a.multi_instantiable,
            "image": a.image,
            "port": a.port,
            "env": a.env,
            "health_path": a.health_path,
            "health_interval": a.health_interval,
            "memory": a.memory,
            "cpus": a.cpus,
            "volume_path": a.volume_path,
            "backup_every": a.backup_every,
            "labels": a.labels,
            "thumbnail": a.thumbnail,
            "metadata": a.meta or {},
            "grants": self.grants,
            "created_at": audit.jsonable(a.created_at),
            "updated_at": audit.jsonable(a.updated_at),
        }


def _payload(app: App) -> dict[str, Any]:
    return {"id": str(app.id), "code": app.code, "name": app.name, "stack": app.stack}


def check_thumbnail(value: str | None) -> str | None:
    """An https URL with a host, at most 500 characters; blank clears it."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > THUMBNAIL_MAX:
        raise BadInput("thumbnail URL is too long", f"at most {THUMBNAIL_MAX} characters")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value):
        raise BadInput(f"invalid thumbnail URL {value!r}", "an https:// URL")
    return value


def check_metadata(value: Any) -> dict[str, Any]:
    """A JSON object of at most 4096 bytes (compact); ``None`` is the empty object."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BadInput(f"invalid metadata: {exc}", "a JSON object") from exc
    if not isinstance(value, dict):
        raise BadInput("invalid metadata: not a JSON object", 'e.g. {"category": "crm"}')
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"invalid metadata: {exc}", "plain JSON values only") from exc
    if len(text.encode()) > METADATA_MAX:
        raise BadInput("metadata is too large", f"at most {METADATA_MAX} bytes of JSON")
    result: dict[str, Any] = json.loads(text)
    return result


def check_code(code: str) -> str:
    if not _CODE.match(code or ""):
        raise BadInput(f"invalid app code {code!r}", "a-z, 0-9 and '-', up to 64 characters")
    return code


def parse_memory(value: str | None) -> str | None:
    """``256m``, ``1g``, ``512k`` or a byte count."""
    if value is None or value == "":
        return None
    if not _MEMORY.match(str(value)):
        raise BadInput(f"invalid memory {value!r}", "e.g. 256m or 1g")
    return str(value).lower()


def memory_bytes(value: str | None) -> int | None:
    if not value:
        return None
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    text = value.lower()
    unit = text[-1] if text[-1] in units else "b"
    number = text[:-1] if text[-1] in units else text
    return int(Decimal(number) * units[unit])


def parse_health_interval(value: str | int | float | None) -> str | None:
    """Seconds between health checks of a running instance: ``10s``, ``1m``, … (1 s to
    1 h); blank is None (the provisioner's default)."""
    from mno.settings import parse_duration

    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip().lower()
    seconds = parse_duration(text).total_seconds()
    low, high = HEALTH_INTERVAL_RANGE
    if not low <= seconds <= high:
        raise BadInput(f"invalid health interval {value!r}", "1s to 1h, e.g. 10s or 1m")
    return text if not text.replace(".", "", 1).isdigit() else f"{text}s"


def parse_cpus(value: str | float | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise BadInput(f"invalid cpus {value!r}", "e.g. 0.5 or 2") from exc
    if number <= 0 or number > 512:
        raise BadInput(f"invalid cpus {value!r}", "a positive number of CPUs")
    return str(number)


def check_every(value: str | None) -> str | None:
    """A backup interval such as 6h or 1d (at least a minute); blank clears it."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    if not re.fullmatch(r"[0-9]+(m|h|d|w)", value) or int(value[:-1]) == 0:
        raise BadInput(f"invalid backup interval {value!r}", "e.g. 6h, 1d or 1w")
    return value


def _check_nex(app: App) -> None:
    if app.stack == "nex":
        if not app.image:
            raise BadInput(f"nex app {app.code} needs --image")
        if not app.port:
            raise BadInput(f"nex app {app.code} needs --port (the container port)")
    if app.port is not None and not (1 <= int(app.port) <= 65535):
        raise BadInput(f"invalid port {app.port}")
    if app.health_path and not app.health_path.startswith("/"):
        raise BadInput(f"invalid health path {app.health_path!r}", "it must start with /")
    if app.volume_path and not app.volume_path.startswith("/"):
        raise BadInput(f"invalid volume path {app.volume_path!r}", "it must be absolute")
    for key in app.env or {}:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise BadInput(f"invalid env name {key!r}")


def get(session: Session, code: str | uuid.UUID) -> App:
    """An app by code, id or unique id prefix."""
    if isinstance(code, uuid.UUID):
        app = session.get(App, code)
    else:
        app = session.exec(select(App).where(App.code == code)).first()
        if app is None:
            app = lookup.find(session, App, code, "app")
    if app is None:
        raise NotFound(f"app {code} not found", "see `mno app list`")
    return app


def view(session: Session, app: App) -> AppView:
    owner = session.get(Tenant, app.owner_id)
    rows = session.exec(
        select(AppGrant, Tenant)
        .where(AppGrant.app_id == app.id, AppGrant.tenant_id == Tenant.id)
        .order_by(Tenant.key)
    ).all()
    names = _package_names(session)
    grants = [_grant_dict(g, t.key, names) for g, t in rows]
    return AppView(app, owner.key if owner else "?", grants)


def _package_names(session: Session) -> dict[uuid.UUID, str]:
    rows = session.execute(sa.select(col(AppPackage.id), col(AppPackage.name))).all()
    return {row[0]: row[1] for row in rows}


def _grant_dict(g: AppGrant, tenant_key: str | None, names: dict[uuid.UUID, str]) -> dict[str, Any]:
    return {
        "tenant": tenant_key,
        "can_edit": bool(g.can_edit),
        "granted_by": g.granted_by,
        "package": names.get(g.package_id) if g.package_id else None,
    }


def create(
    session: Session,
    name: str,
    *,
    code: str | None = None,
    stack: str = "cloud",
    type: str = "app",
    access: str = "own",
    owner: str | None = None,
    enabled: bool = True,
    multi_instantiable: bool = False,
    image: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    health_path: str | None = None,
    health_interval: str | None = None,
    memory: str | None = None,
    cpus: str | None = None,
    volume_path: str | None = None,
    backup_every: str | None = None,
    labels: dict[str, str] | None = None,
    thumbnail: str | None = None,
    metadata: dict[str, Any] | str | None = None,
    if_not_exists: bool = False,
) -> tuple[App, bool]:
    """Add an app to the catalogue; returns (app, created)."""
    name = (name or "").strip()
    if not name:
        raise BadInput("app name must not be empty")
    code = check_code(code or validate.slug(name))
    existing = session.exec(select(App).where(App.code == code)).first()
    if existing is not None:
        if if_not_exists:
            return existing, False
        raise Conflict(f"app {code} already exists", "use --if-not-exists to accept that")
    owner_tenant = tenants.get(session, owner) if owner else tenants.ensure_system(session)
    app = _build(
        name,
        code,
        owner_tenant.id,
        stack=stack,
        type=type,
        access=access,
        enabled=enabled,
        multi_instantiable=multi_instantiable,
        image=image,
        port=port,
        env=env,
        health_path=health_path,
        health_interval=health_interval,
        memory=memory,
        cpus=cpus,
        volume_path=volume_path,
        backup_every=backup_every,
        labels=labels,
        thumbnail=thumbnail,
        metadata=metadata,
    )
    session.add(app)
    session.flush()
    audit.record(
        session,
        "app.create",
        target_type="app",
        target_id=app.id,
        target=code,
        after=audit.snapshot(app) | {"owner": owner_tenant.key},
    )
    outbox.emit(session, "app.created", _payload(app) | {"owner": owner_tenant.key})
    return app, True


def _build(
    name: str,
    code: str,
    owner_id: Any,
    *,
    stack: str = "cloud",
    type: str = "app",
    access: str = "own",
    enabled: bool = True,
    multi_instantiable: bool = False,
    image: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    health_path: str | None = None,
    health_interval: str | None = None,
    memory: str | None = None,
    cpus: str | None = None,
    volume_path: str | None = None,
    backup_every: str | None = None,
    labels: dict[str, str] | None = None,
    thumbnail: str | None = None,
    metadata: dict[str, Any] | str | None = None,
) -> App:
    """A checked, unsaved app row."""
    app = App(
        code=code,
        name=name,
        stack=validate.one_of(stack, STACKS, "stack"),
        type=validate.one_of(type, TYPES, "type"),
        access=validate.one_of(access, ACCESS, "access"),
        owner_id=owner_id,
        enabled=enabled,
        multi_instantiable=multi_instantiable,
        image=image,
        port=port,
        env=dict(env or {}),
        health_path=health_path,
        health_interval=parse_health_interval(health_interval),
        memory=parse_memory(memory),
        cpus=parse_cpus(cpus),
        volume_path=volume_path,
        backup_every=check_every(backup_every),
        labels=dict(labels or {}),
        thumbnail=check_thumbnail(thumbnail),
        meta=check_metadata(metadata),
    )
    _check_nex(app)
    return app


def create_many(session: Session, items: Sequence[dict[str, Any]]) -> list[App]:
    """Add many apps at once, with ``create()``'s rules, audit rows and events.

    Each item holds ``create()``'s keywords (``name`` required, ``owner`` a tenant key).
    The store is read a fixed number of times and each table written with one statement,
    so the cost does not grow with a query per app."""
    if not items:
        return []
    taken = set(session.execute(sa.select(col(App.code))).scalars())
    keys = dict(session.execute(sa.select(col(Tenant.key), col(Tenant.id))).all())
    if tenants.SYSTEM_KEY not in keys:
        keys[tenants.SYSTEM_KEY] = tenants.ensure_system(session).id
    apps: list[tuple[App, str]] = []
    for item in items:
        fields = dict(item)
        name = (fields.pop("name", None) or "").strip()
        if not name:
            raise BadInput("app name must not be empty")
        code = check_code(fields.pop("code", None) or validate.slug(name))
        if code in taken:
            raise Conflict(f"app {code} already exists")
        taken.add(code)
        owner = fields.pop("owner", None) or tenants.SYSTEM_KEY
        if owner not in keys:
            raise NotFound(f"tenant {owner} not found", "see `mno tenant list`")
        apps.append((_build(name, code, keys[owner], **fields), owner))
    session.add_all([app for app, _ in apps])
    session.flush()
    audit.record_many(
        session,
        [
            {
                "action": "app.create",
                "target_type": "app",
                "target_id": app.id,
                "target": app.code,
                "after": audit.snapshot(app) | {"owner": owner},
            }
            for app, owner in apps
        ],
    )
    outbox.emit_many(
        session, [("app.created", _payload(app) | {"owner": owner}, None) for app, owner in apps]
    )
    return [app for app, _ in apps]


def update(
    session: Session,
    code: str,
    /,
    *,
    owner: str | None = None,
    by: str | None = None,
    **fields: Any,
) -> App:
    """Change an app's fields. The owner, code and stack are fixed at creation (exit 2).

    ``by`` is the tenant acting (``None``: the platform operator); it needs ``edit``
    access to the app."""
    app = get(session, code)
    fixed = [name for name in IMMUTABLE if fields.get(name) is not None]
    if owner is not None:
        current = session.get(Tenant, app.owner_id)
        if current is None or current.key != owner:
            fixed.insert(0, "owner")
    for name in fixed:
        if name != "owner" and fields[name] == getattr(app, name):
            continue
        raise BadInput(
            f"app {app.code}: {name} cannot change after creation", "create a new app instead"
        )
    for name in IMMUTABLE:
        fields.pop(name, None)
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise BadInput(f"unknown app field(s): {', '.join(sorted(unknown))}")
    if by is not None:
        allowed, why = check_access(session, app, by, need="edit")
        if not allowed:
            raise Forbidden(f"{by} may not change app {app.code}: {why}")
    before = audit.snapshot(app)
    for name, value in fields.items():
        if value is None:
            continue
        if name == "type":
            value = validate.one_of(value, TYPES, "type")
        elif name == "access":
            value = validate.one_of(value, ACCESS, "access")
        elif name == "memory":
            value = parse_memory(value)
        elif name == "cpus":
            value = parse_cpus(value)
        elif name == "health_interval":
            value = parse_health_interval(value)
        elif name == "name":
            value = value.strip()
            if not value:
                raise BadInput("app name must not be empty")
        elif name in ("env", "labels"):
            value = dict(value)
        elif name == "thumbnail":
            value = check_thumbnail(value)
        elif name == "backup_every":
            value = check_every(value)
        elif name == "metadata":
            app.meta = check_metadata(value)
            continue
        setattr(app, name, value)
    _check_nex(app)
    after = audit.snapshot(app)
    if after == before:
        return app
    app.touch()
    session.add(app)
    audit.record(
        session,
        "app.update",
        target_type="app",
        target_id=app.id,
        target=app.code,
        before=before,
        after=after,
    )
    outbox.emit(session, "app.updated", _payload(app) | {"changes": audit.diff(before, after)})
    session.flush()
    return app


def set_enabled(session: Session, code: str, enabled: bool) -> App:
    app = get(session, code)
    if app.enabled == enabled:
        return app
    app.enabled = enabled
    app.touch()
    session.add(app)
    action = "enable" if enabled else "disable"
    audit.record(
        session,
        f"app.{action}",
        target_type="app",
        target_id=app.id,
        target=app.code,
        before={"enabled": not enabled},
        after={"enabled": enabled},
    )
    outbox.emit(session, f"app.{action}d", _payload(app))
    return app


def delete(session: Session, code: str) -> None:
    """Remove an app from the catalogue, with its grants (and from its packages).

    Refused while anything else still points at it (connectors, API keys, instances, ...):
    every table with a foreign key to ``app`` is checked.
    """
    app = get(session, code)
    load_all()
    for table in SQLModel.metadata.sorted_tables:
        if table.name in ("app", "app_grant", "app_package_app"):
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == "app":
                used = session.execute(
                    sa.select(sa.func.count()).select_from(table).where(fk.parent == app.id)
                ).scalar_one()
                if used:
                    raise Conflict(
                        f"app {app.code} is still used by {used} {table.name} row(s)",
                        "remove those first, or disable the app instead",
                    )
    before = audit.snapshot(app)
    for grant_row in session.exec(select(AppGrant).where(AppGrant.app_id == app.id)):
        session.delete(grant_row)
    for member in session.exec(select(AppPackageApp).where(AppPackageApp.app_id == app.id)):
        session.delete(member)
    session.flush()
    session.delete(app)
    audit.record(
        session,
        "app.delete",
        target_type="app",
        target_id=app.id,
        target=app.code,
        before=before,
    )
    outbox.emit(session, "app.deleted", _payload(app))
    session.flush()


def _apps_stmt(stack: str | None, enabled: bool | None) -> Any:
    stmt = select(App)
    if stack:
        stmt = stmt.where(App.stack == validate.one_of(stack, STACKS, "stack"))
    if enabled is not None:
        stmt = stmt.where(App.enabled == enabled)
    return stmt


def _app_views(session: Session, apps: Sequence[App]) -> list[AppView]:
    """Views of a page or chunk of apps: their owners' keys and their grants in a few
    queries whatever the count."""
    if not apps:
        return []
    ids = [a.id for a in apps]
    found = session.exec(select(AppGrant).where(col(AppGrant.app_id).in_(ids))).all()
    tenant_ids = {a.owner_id for a in apps} | {g.tenant_id for g in found}
    keys = dict(
        session.execute(
            sa.select(col(Tenant.id), col(Tenant.key)).where(col(Tenant.id).in_(tenant_ids))
        ).all()
    )
    package_ids = {g.package_id for g in found if g.package_id}
    names = (
        dict(
            session.execute(
                sa.select(col(AppPackage.id), col(AppPackage.name)).where(
                    col(AppPackage.id).in_(package_ids)
                )
            ).all()
        )
        if package_ids
        else {}
    )
    grants: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for g in found:
        grants.setdefault(g.app_id, []).append(_grant_dict(g, keys.get(g.tenant_id), names))
    return [
        AppView(
            a, keys.get(a.owner_id, "?"), sorted(grants.get(a.id, []), key=lambda g: g["tenant"])
        )
        for a in apps
    ]


def page_apps(
    session: Session,
    *,
    stack: str | None = None,
    enabled: bool | None = None,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[AppView]:
    """One page of apps by code, after the cursor ``after`` (an app code)."""
    rows, nxt = paging.page(session, _apps_stmt(stack, enabled), [col(App.code)], after, limit)
    return paging.Page(_app_views(session, rows), nxt)


def stream_apps(
    session: Session,
    *,
    stack: str | None = None,
    enabled: bool | None = None,
    after: str | None = None,
) -> Iterator[AppView]:
    """Every app by code, read a chunk at a time."""
    for rows in paging.stream(session, _apps_stmt(stack, enabled), [col(App.code)], after):
        yield from _app_views(session, rows)


def granter(session: Session, app: App, by: str | None) -> str:
    """Who grants on ``app`` when ``by`` acts: the owner's key or ``system``; anyone
    else is refused (exit 1)."""
    if by is None or by == tenants.SYSTEM_KEY:
        return tenants.SYSTEM_KEY
    actor = tenants.get(session, by)
    if actor.id == app.owner_id:
        return actor.key
    owner = session.get(Tenant, app.owner_id)
    raise Forbidden(
        f"{actor.key} may not grant app {app.code}",
        f"only its owner {owner.key if owner else '?'} or system may",
    )


def grant(
    session: Session,
    code: str,
    tenant_key: str,
    *,
    can_edit: bool = False,
    by: str | None = None,
    package_id: uuid.UUID | None = None,
    replaces: uuid.UUID | None = None,
) -> AppGrant:
    """Give ``tenant_key`` read (or, with ``can_edit``, edit) access to an app.

    A direct grant on top of a package's grant makes it direct (revoking the package
    then leaves it); a package's grant never changes a direct one, nor another package's
    unless that package is ``replaces`` (one being revoked)."""
    app = get(session, code)
    granted_by = granter(session, app, by)
    tenant = tenants.get(session, tenant_key)
    if tenant.status in ("offboarding", "offboarded"):
        raise InvalidTransition(
            f"tenant {tenant.key} is {tenant.status}: it cannot be granted apps",
            "grants are for live tenants",
        )
    existing = session.exec(
        select(AppGrant).where(AppGrant.app_id == app.id, AppGrant.tenant_id == tenant.id)
    ).first()
    if existing is not None:
        held = existing.package_id
        if package_id is not None and (held is None or held not in (package_id, replaces)):
            return existing  # already held directly or from another package
        same = (existing.can_edit, existing.granted_by, existing.package_id)
        if same == (can_edit, granted_by, package_id):
            return existing
        before = {
            "can_edit": existing.can_edit,
            "granted_by": existing.granted_by,
            "package_id": str(existing.package_id) if existing.package_id else None,
        }
        existing.can_edit = can_edit
        existing.granted_by = granted_by
        existing.package_id = package_id
        existing.touch()
        row = existing
    else:
        before = {}
        row = AppGrant(
            app_id=app.id,
            tenant_id=tenant.id,
            can_edit=can_edit,
            granted_by=granted_by,
            package_id=package_id,
        )
    session.add(row)
    after = {"tenant": tenant.key, "can_edit": can_edit, "granted_by": granted_by}
    if package_id is not None:
        package = session.get(AppPackage, package_id)
        after["package"] = package.name if package else str(package_id)
    audit.record(
        session,
        "app.grant",
        target_type="app",
        target_id=app.id,
        target=app.code,
        before=before,
        after=after,
        tenant_id=tenant.id,
    )
    outbox.emit(session, "app.access_granted", _payload(app) | after, tenant.id)
    session.flush()
    return row


def revoke(session: Session, code: str, tenant_key: str, *, by: str | None = None) -> None:
    app = get(session, code)
    revoked_by = granter(session, app, by)
    tenant = tenants.get(session, tenant_key)
    row = session.exec(
        select(AppGrant).where(AppGrant.app_id == app.id, AppGrant.tenant_id == tenant.id)
    ).first()
    if row is None:
        raise NotFound(f"{tenant.key} has no grant on app {app.code}")
    remove_grant(session, app, tenant, row, revoked_by)


def remove_grant(
    session: Session, app: App, tenant: Tenant, row: AppGrant, revoked_by: str
) -> None:
    """Delete one grant row with its audit row and event."""
    session.delete(row)
    audit.record(
        session,
        "app.revoke",
        target_type="app",
        target_id=app.id,
        target=app.code,
        before={"tenant": tenant.key, "can_edit": row.can_edit, "granted_by": row.granted_by},
        after={"revoked_by": revoked_by},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "app.access_revoked",
        _payload(app) | {"tenant": tenant.key, "revoked_by": revoked_by},
        tenant.id,
    )
    session.flush()


def check_access(
    session: Session, app: App | str, tenant: Tenant | str, *, need: str = "read"
) -> tuple[bool, str]:
    """Whether ``tenant`` may use (``need="read"``) or change (``need="edit"``) ``app``,
    and why."""
    need = validate.one_of(need, NEEDS, "need")
    app = get(session, app) if isinstance(app, str) else app
    tenant = tenants.get(session, tenant) if isinstance(tenant, str) else tenant
    owner = session.get(Tenant, app.owner_id)
    owner_key = owner.key if owner else "?"
    if not app.enabled:
        return False, f"app {app.code} is disabled"
    if tenant.id == app.owner_id:
        return True, f"{tenant.key} owns {app.code}"
    if tenant.key == tenants.SYSTEM_KEY:
        return True, "the system tenant may use every app"
    granted = session.exec(
        select(AppGrant).where(AppGrant.app_id == app.id, AppGrant.tenant_id == tenant.id)
    ).first()
    if granted is not None:
        level = "edit" if granted.can_edit else "read"
        who = (
            "system" if granted.granted_by == tenants.SYSTEM_KEY else f"owner {granted.granted_by}"
        )
        via = ""
        if granted.package_id is not None:
            package = session.get(AppPackage, granted.package_id)
            via = f" via package {package.name if package else granted.package_id}"
        if need == "read" or granted.can_edit:
            return True, f"granted by {who}{via} ({level})"
        return False, f"{tenant.key} has a read-only grant on {app.code} (granted by {who}{via})"
    if app.access == "any" and tenant.id in tenants.descendant_ids(session, app.owner_id):
        if need == "read":
            return True, f"{tenant.key} is managed by the owner {owner_key} (access: any)"
        return (
            False,
            f"{tenant.key} may use {app.code} but not change it (access: any, no edit grant)",
        )
    if app.access == "own":
        return False, f"{app.code} is private to its owner {owner_key} (access: own)"
    if app.access == "any":
        return False, f"{tenant.key} is not managed by the owner {owner_key} (access: any)"
    return False, f"{tenant.key} has no grant on {app.code} (access: explicit)"
