"""mno member: who belongs to a tenant, with which role.

Domain modules and the store are imported inside the commands that use them:
`mno member --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, done, render_list
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm

app = typer.Typer(help="Manage tenant members and their roles.", no_args_is_help=True)

ROLE_HELP = "member, power_user, admin, super_admin or a custom role."
AsOpt = Annotated[
    str | None,
    typer.Option("--as", help="Act as this member (their role decides); default: operator."),
]


@app.command("add")
def add(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    email: Annotated[str, typer.Argument(help="User email (created when unknown).")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "member",
    name: Annotated[str, typer.Option(help="Name for a new user.")] = "",
    as_: AsOpt = None,
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="Succeed if already a member.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Add a user to a tenant."""
    from mno.access import members
    from mno.store.db import session_scope

    with session_scope() as s:
        m, created = members.add(
            s, tenant, email, role, by=as_, if_not_exists=if_not_exists, name=name
        )
        data = {"tenant": tenant, "email": email.lower(), "role": m.role}
    done(data, f"{email} {'added to' if created else 'already in'} {tenant} as {m.role}", output)


@app.command("list")
def list_(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List a tenant's members."""
    from mno.access import members
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = members.list_members(s, tenant)
    render_list(
        rows,
        "email",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=["email", "name", "role", "status", "since"],
    )


@app.command("set-role")
def set_role(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    email: Annotated[str, typer.Argument(help="Member email.")],
    role: Annotated[str, typer.Argument(help=ROLE_HELP)],
    as_: AsOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change a member's role."""
    from mno.access import members
    from mno.store.db import session_scope

    with session_scope() as s:
        m = members.set_role(s, tenant, email, role, by=as_)
        data = {"tenant": tenant, "email": email.lower(), "role": m.role}
    done(data, f"{email} is now {m.role} in {tenant}", output)


@app.command("remove")
def remove(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    email: Annotated[str, typer.Argument(help="Member email.")],
    as_: AsOpt = None,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Remove a member from a tenant (and its teams)."""
    from mno.access import members
    from mno.store.db import session_scope

    confirm(f"remove member {email} from tenant {tenant}", yes)
    with session_scope() as s:
        members.remove(s, tenant, email, by=as_)
    done(
        {"tenant": tenant, "email": email.lower(), "removed": True},
        f"{email} removed from {tenant}",
        output,
    )
