"""mno role: custom roles, each a set of permissions beyond the built-in roles.

Domain modules and the store are imported inside the commands that use them:
`mno role --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_page, render_stream, success
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm

app = typer.Typer(help="Custom roles and the permissions they grant.", no_args_is_help=True)

TenantOpt = Annotated[
    str | None, typer.Option(help="Only for this tenant (default: every tenant).")
]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Role name (a-z, 0-9, '_', '-'; 16 at most).")],
    permission: Annotated[
        list[str],
        typer.Option(
            "--permission",
            help="An action the role allows (repeatable): read, sync, open, invite, purchase, "
            "manage_members, manage_instances, manage_teams, manage_billing, update_tenant, "
            "delete_tenant.",
        ),
    ],
    tenant: TenantOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Define a custom role."""
    from mno.access import custom_roles
    from mno.store.db import session_scope

    with session_scope() as s:
        data = custom_roles.as_dict(s, custom_roles.create(s, name, permission, tenant_key=tenant))
    if output is Format.table:
        success(f"role {name} created")
    render(data, output)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only the roles this tenant sees.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List the built-in roles (least to most powerful), then custom ones by name."""
    from mno.access import custom_roles, roles
    from mno.store.db import session_scope
    from mno.store.paging import page_list

    def order(role: dict[str, Any]) -> tuple[str, str, str]:
        if role["builtin"]:  # fixed, in rank order
            return ("0", str(roles.RANK[role["name"]]), "")
        return ("1", role["name"], role["tenant"] or "")

    with session_scope(write=False) as s:
        rows = custom_roles.list_roles(s, tenant_key=tenant)
    page = page_list(rows, order, after, None if all_ else limit)
    columns, empty = ["name", "tenant", "builtin", "permissions"], "No roles."
    if all_:
        render_stream(page.rows, output, columns=columns, empty=empty)
    else:
        render_page(page.rows, page.next, output, columns=columns, empty=empty)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Role name.")],
    tenant: TenantOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Show a custom role."""
    from mno.access import custom_roles
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        data = custom_roles.as_dict(s, custom_roles.get(s, name, tenant))
    render(data, output)


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Role name.")],
    tenant: TenantOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete a custom role (refused while a member holds it)."""
    from mno.access import custom_roles
    from mno.store.db import session_scope

    confirm(f"delete role {name}", yes)
    with session_scope() as s:
        custom_roles.delete(s, name, tenant_key=tenant)
    done({"role": name, "tenant": tenant, "deleted": True}, f"role {name} deleted", output)
