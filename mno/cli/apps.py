"""mno app: the apps catalogue and access rules.

Domain modules, the store and ``mno.cli.params`` are imported inside the commands that
use them: `mno app --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.output import (
    Format,
    OutputOpt,
    done,
    render,
    render_list,
    render_page,
    render_stream,
    success,
)
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm
from mno.cli.sso import client_app as sso_client_app

app = typer.Typer(help="Manage the apps catalogue and who may use each app.", no_args_is_help=True)

LIST_COLUMNS = [
    "code",
    "name",
    "stack",
    "type",
    "access",
    "owner",
    "enabled",
    "image",
    "thumbnail",
]

ThumbnailOpt = Annotated[
    str | None, typer.Option(help="Thumbnail image URL (https); '' clears it on update.")
]
MetadataOpt = Annotated[
    str | None, typer.Option(help="Free metadata, a JSON object (4 KB at most), e.g. '{\"a\": 1}'.")
]
AsTenantOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        help="Act on behalf of this tenant (default: the platform operator, as system).",
    ),
]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="App name.")],
    code: Annotated[
        str | None, typer.Option(help="Unique code (default: slug of the name).")
    ] = None,
    stack: Annotated[str, typer.Option(help="cloud, nex or connector.")] = "cloud",
    type: Annotated[str, typer.Option("--type", help="app or site.")] = "app",
    access: Annotated[str, typer.Option(help="own, any or explicit.")] = "own",
    owner: Annotated[str | None, typer.Option(help="Owner tenant (default: system).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    multi_instantiable: Annotated[
        bool, typer.Option("--multi-instantiable", help="A tenant may run several instances.")
    ] = False,
    image: Annotated[str | None, typer.Option(help="Container image (nex apps).")] = None,
    port: Annotated[int | None, typer.Option(help="Container port (nex apps).")] = None,
    env: Annotated[list[str] | None, typer.Option(help="K=V; value may be secret:NAME.")] = None,
    health_path: Annotated[
        str | None, typer.Option(help="Health-check path, e.g. /health.")
    ] = None,
    health_interval: Annotated[
        str | None,
        typer.Option(help="Seconds between health checks once running, e.g. 10s (1s to 1h)."),
    ] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 256m.")] = None,
    cpus: Annotated[str | None, typer.Option(help="CPU limit, e.g. 0.5.")] = None,
    volume_path: Annotated[str | None, typer.Option(help="Data volume mount path.")] = None,
    backup_every: Annotated[
        str | None, typer.Option(help="Back up the data volume every (e.g. 6h, 1d).")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="Placement label K=V.")] = None,
    thumbnail: ThumbnailOpt = None,
    metadata: MetadataOpt = None,
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="Succeed if the code already exists.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Add an app to the catalogue."""
    from mno.cli.params import pairs
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope() as s:
        row, created = apps.create(
            s,
            name,
            code=code,
            stack=stack,
            type=type,
            access=access,
            owner=owner,
            enabled=not disabled,
            multi_instantiable=multi_instantiable,
            image=image,
            port=port,
            env=pairs(env, "env"),
            health_path=health_path,
            health_interval=health_interval,
            memory=memory,
            cpus=cpus,
            volume_path=volume_path,
            backup_every=backup_every,
            labels=pairs(label, "label"),
            thumbnail=thumbnail,
            metadata=metadata,
            if_not_exists=if_not_exists,
        )
        view = apps.view(s, row)
    if output is Format.table:
        success(f"app {row.code} {'created' if created else 'already exists'}")
    render(view, output)


@app.command("list")
def list_(
    stack: Annotated[str | None, typer.Option(help="Only this stack.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled or disabled apps.")
    ] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List apps, by code."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        params: dict[str, Any] = {"stack": stack}
        if enabled is not None:
            params["enabled"] = "true" if enabled else "false"
        if all_:
            every = client.pages("/v1/hub/apps", "apps", **params, cursor=after, limit=500)
            render_stream(every, output, columns=LIST_COLUMNS, empty="No apps.")
            return
        rows_, cursor = client.page("/v1/hub/apps", "apps", limit=limit, after=after, **params)
        render_page(rows_, cursor, output, columns=LIST_COLUMNS, empty="No apps.")
        return
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope(write=False) as s:
        if all_:
            found = apps.stream_apps(s, stack=stack, enabled=enabled, after=after)
            render_stream(found, output, columns=LIST_COLUMNS, empty="No apps.")
            return
        page = apps.page_apps(s, stack=stack, enabled=enabled, after=after, limit=limit)
    render_page(page.rows, page.next, output, columns=LIST_COLUMNS, empty="No apps.")


@app.command("show")
def show(
    code: Annotated[str, typer.Argument(help="App code.")], output: OutputOpt = Format.table
) -> None:
    """Show one app with its grants."""
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope(write=False) as s:
        view = apps.view(s, apps.get(s, code))
    render(view, output)


@app.command("update")
def update(
    code: Annotated[str, typer.Argument(help="App code.")],
    name: Annotated[str | None, typer.Option(help="App name.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="app or site.")] = None,
    access: Annotated[str | None, typer.Option(help="own, any or explicit.")] = None,
    owner: Annotated[
        str | None, typer.Option(help="Owner tenant: fixed at creation, a change is refused.")
    ] = None,
    multi_instantiable: Annotated[
        bool | None,
        typer.Option("--multi-instantiable/--single-instance", help="Several instances or one."),
    ] = None,
    image: Annotated[str | None, typer.Option(help="Container image.")] = None,
    port: Annotated[int | None, typer.Option(help="Container port.")] = None,
    env: Annotated[list[str] | None, typer.Option(help="Replace env: K=V, repeatable.")] = None,
    health_path: Annotated[str | None, typer.Option(help="Health-check path.")] = None,
    health_interval: Annotated[
        str | None,
        typer.Option(help="Seconds between health checks once running, e.g. 10s; '' clears it."),
    ] = None,
    memory: Annotated[str | None, typer.Option(help="Memory limit, e.g. 256m.")] = None,
    cpus: Annotated[str | None, typer.Option(help="CPU limit, e.g. 0.5.")] = None,
    volume_path: Annotated[str | None, typer.Option(help="Data volume mount path.")] = None,
    backup_every: Annotated[
        str | None, typer.Option(help="Back up the data volume every (e.g. 6h, 1d).")
    ] = None,
    thumbnail: ThumbnailOpt = None,
    metadata: MetadataOpt = None,
    as_: AsTenantOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change an app's fields (the owner and code are fixed; a tenant needs edit access)."""
    from mno.cli.params import pairs
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope() as s:
        row = apps.update(
            s,
            code,
            owner=owner,
            name=name,
            type=type,
            access=access,
            multi_instantiable=multi_instantiable,
            image=image,
            port=port,
            env=pairs(env, "env") if env is not None else None,
            health_path=health_path,
            health_interval=health_interval,
            memory=memory,
            cpus=cpus,
            volume_path=volume_path,
            backup_every=backup_every,
            thumbnail=thumbnail,
            metadata=metadata,
            by=as_,
        )
        view = apps.view(s, row)
    render(view, output)


def _set_enabled(code: str, enabled: bool, output: Format) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope() as s:
        view = apps.view(s, apps.set_enabled(s, code, enabled))
    if output is Format.table:
        success(f"app {code} {'enabled' if enabled else 'disabled'}")
    render(view, output)


@app.command("enable")
def enable(
    code: Annotated[str, typer.Argument(help="App code.")], output: OutputOpt = Format.table
) -> None:
    """Enable an app."""
    _set_enabled(code, True, output)


@app.command("disable")
def disable(
    code: Annotated[str, typer.Argument(help="App code.")], output: OutputOpt = Format.table
) -> None:
    """Disable an app: no tenant may use it until it is enabled again."""
    _set_enabled(code, False, output)


@app.command("delete")
def delete(
    code: Annotated[str, typer.Argument(help="App code.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Remove an app from the catalogue (refused while anything still uses it)."""
    from mno.store.db import session_scope
    from mno.tenancy import apps

    confirm(f"delete app {code}", yes)
    with session_scope() as s:
        apps.delete(s, code)
    done({"app": code, "deleted": True}, f"app {code} deleted", output)


@app.command("grant")
def grant(
    code: Annotated[str, typer.Argument(help="App code.")],
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    can_edit: Annotated[bool, typer.Option("--can-edit", help="Also allow editing.")] = False,
    as_: AsTenantOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Grant a tenant read (or edit) access to an app; only its owner or system may."""
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope() as s:
        row = apps.grant(s, code, tenant, can_edit=can_edit, by=as_)
        granted_by = row.granted_by
    level = "edit" if can_edit else "use"
    done(
        {"app": code, "tenant": tenant, "can_edit": can_edit, "granted_by": granted_by},
        f"{tenant} may {level} {code} (granted by {granted_by})",
        output,
    )


@app.command("revoke")
def revoke(
    code: Annotated[str, typer.Argument(help="App code.")],
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    as_: AsTenantOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Revoke a tenant's grant on an app; only its owner or system may."""
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope() as s:
        apps.revoke(s, code, tenant, by=as_)
    done(
        {"app": code, "tenant": tenant, "revoked": True},
        f"{tenant} no longer has a grant on {code}",
        output,
    )


@app.command("access")
def access(
    code: Annotated[str, typer.Argument(help="App code.")],
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    need: Annotated[str, typer.Option(help="read (use the app) or edit (change it).")] = "read",
    output: OutputOpt = Format.table,
) -> None:
    """Answer whether a tenant may use (or edit) an app, and why (exit 1 when denied)."""
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope(write=False) as s:
        allowed, reason = apps.check_access(s, code, tenant, need=need)
    render(
        {"app": code, "tenant": tenant, "need": need, "allowed": allowed, "reason": reason},
        output,
    )
    if not allowed:
        raise typer.Exit(1)


keys_app = typer.Typer(help="Manage an app's API keys (Developer API, IDM).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(sso_client_app, name="sso")


@keys_app.command("rotate")
def keys_rotate(
    code: Annotated[str, typer.Argument(help="App code.")],
    grace: Annotated[
        str | None, typer.Option(help="How long older keys stay valid (default 24h).")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Issue a new key id and secret (printed once); older keys retire after the grace."""
    from mno.access import keys
    from mno.store.db import session_scope

    with session_scope() as s:
        issued = keys.rotate(s, code, grace=grace)
    data = {**issued.view, "secret": issued.secret}
    if output is Format.table:
        success(f"new key {data['key_id']} for {code}; the secret is shown only this once")
    render(data, output)


@keys_app.command("list")
def keys_list(
    code: Annotated[str, typer.Argument(help="App code.")],
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List an app's API keys (ids and status, never secrets)."""
    from mno.access import keys
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = keys.list_keys(s, code)
    render_list(
        rows,
        "key_id",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=["key_id", "status", "expires_at", "created_at"],
    )


package_app = typer.Typer(
    help="Packages: named sets of apps granted together.", no_args_is_help=True
)
app.add_typer(package_app, name="package")


@package_app.command("create")
def package_create(
    name: Annotated[str, typer.Argument(help="Package name (a-z, 0-9, '-').")],
    app_: Annotated[list[str], typer.Option("--app", help="App code, repeatable.")],
    description: Annotated[str, typer.Option(help="What the package is for.")] = "",
    output: OutputOpt = Format.table,
) -> None:
    """Create a package of apps."""
    from mno.store.db import session_scope
    from mno.tenancy import packages

    with session_scope() as s:
        data = packages.as_dict(s, packages.create(s, name, app_, description=description))
    if output is Format.table:
        success(f"package {name} created with {len(data['apps'])} app(s)")
    render(data, output)


@package_app.command("list")
def package_list(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List packages with their apps, by name."""
    from mno.store.db import session_scope
    from mno.tenancy import packages

    columns, empty = ["name", "apps", "description", "created_at"], "No packages."
    with session_scope(write=False) as s:
        if all_:
            found = packages.stream_packages(s, after=after)
            render_stream(found, output, columns=columns, empty=empty)
            return
        page = packages.page_packages(s, after=after, limit=limit)
    render_page(page.rows, page.next, output, columns=columns, empty=empty)


@package_app.command("show")
def package_show(
    name: Annotated[str, typer.Argument(help="Package name.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show a package: its apps and the tenants it is granted to."""
    from mno.store.db import session_scope
    from mno.tenancy import packages

    with session_scope(write=False) as s:
        data = packages.as_dict(s, packages.get(s, name))
    render(data, output)


@package_app.command("delete")
def package_delete(
    name: Annotated[str, typer.Argument(help="Package name.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete a package (refused while it is granted)."""
    from mno.store.db import session_scope
    from mno.tenancy import packages

    confirm(f"delete package {name}", yes)
    with session_scope() as s:
        packages.delete(s, name)
    done({"package": name, "deleted": True}, f"package {name} deleted", output)


@package_app.command("grant")
def package_grant(
    name: Annotated[str, typer.Argument(help="Package name.")],
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    can_edit: Annotated[bool, typer.Option("--can-edit", help="Also allow editing.")] = False,
    as_: AsTenantOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Grant every app of a package to a tenant."""
    from mno.store.db import session_scope
    from mno.tenancy import packages

    with session_scope() as s:
        packages.grant(s, name, tenant, can_edit=can_edit, by=as_)
        codes = packages.app_codes(s, packages.get(s, name))
    done(
        {"package": name, "tenant": tenant, "can_edit": can_edit, "apps": codes},
        f"{tenant} was granted package {name}: {', '.join(codes)}",
        output,
    )


@package_app.command("revoke")
def package_revoke(
    name: Annotated[str, typer.Argument(help="Package name.")],
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    as_: AsTenantOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Revoke a package from a tenant, with the grants it gave (direct grants stay)."""
    from mno.store.db import session_scope
    from mno.tenancy import packages

    with session_scope() as s:
        removed = packages.revoke(s, name, tenant, by=as_)
    done(
        {"package": name, "tenant": tenant, "revoked": True, "apps": removed},
        f"package {name} revoked from {tenant}; grants removed: {', '.join(removed) or 'none'}",
        output,
    )
