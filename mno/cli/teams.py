"""mno team: teams and the app instances their members may open.

Domain modules and the store are imported inside the commands that use them:
`mno team --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.members import AsOpt
from mno.cli.output import Format, OutputOpt, done, render_list
from mno.cli.params import AfterOpt, AllOpt, LimitOpt

app = typer.Typer(help="Manage teams and the instances they open.", no_args_is_help=True)


@app.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    name: Annotated[str, typer.Argument(help="Team name.")],
    as_: AsOpt = None,
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="Succeed if the team exists.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Create a team in a tenant."""
    from mno.access import teams
    from mno.store.db import session_scope

    with session_scope() as s:
        team, created = teams.create(s, tenant, name, by=as_, if_not_exists=if_not_exists)
        data = teams.as_dict(s, team, teams.get(s, tenant, name)[0])
    done(data, f"team {name} {'created' if created else 'already exists'} in {tenant}", output)


@app.command("list")
def list_(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List a tenant's teams."""
    from mno.access import teams
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = teams.list_teams(s, tenant)
    render_list(
        rows,
        "name",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=["name", "members", "instances"],
    )


@app.command("add-member")
def add_member(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    name: Annotated[str, typer.Argument(help="Team name.")],
    email: Annotated[str, typer.Argument(help="Member email.")],
    as_: AsOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Put a member in a team."""
    from mno.access import teams
    from mno.store.db import session_scope

    with session_scope() as s:
        tenant_row, team = teams.get(s, tenant, name)
        teams.add_member(s, tenant, name, email, by=as_)
        data = teams.as_dict(s, team, tenant_row)
    done(data, f"{email} added to team {name}", output)


@app.command("add-instance")
def add_instance(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    name: Annotated[str, typer.Argument(help="Team name.")],
    instance: Annotated[str, typer.Argument(help="App instance id.")],
    as_: AsOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Let a team's members open an app instance."""
    from mno.access import teams
    from mno.store.db import session_scope

    with session_scope() as s:
        tenant_row, team = teams.get(s, tenant, name)
        teams.add_instance(s, tenant, name, instance, by=as_)
        data = teams.as_dict(s, team, tenant_row)
    done(data, f"instance {instance} added to team {name}", output)
