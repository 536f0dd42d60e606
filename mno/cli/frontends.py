"""mno frontend: the sites customers sign up through, with their own API credentials,
allowed browser origins, branding and customer base (shared or isolated).

Domain modules and the store are imported inside the commands that use them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_list, success
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm

app = typer.Typer(
    help="Frontends: sign-up sites with their own credentials, origins and branding.",
    no_args_is_help=True,
)

COLUMNS = ["name", "customers", "origins", "key_id", "created_at"]


class Customers(StrEnum):
    shared = "shared"
    isolated = "isolated"


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Frontend name (a-z, 0-9, '-').")],
    customers: Annotated[
        Customers, typer.Option(help="shared: the platform's customers; isolated: its own.")
    ] = Customers.shared,
    origin: Annotated[
        list[str] | None,
        typer.Option(help="A browser origin allowed to call the API; repeat for more."),
    ] = None,
    brand_name: Annotated[str | None, typer.Option(help="Name shown in its emails.")] = None,
    from_address: Annotated[
        str | None, typer.Option("--from", help="From-address of its emails.")
    ] = None,
    logo_url: Annotated[str | None, typer.Option(help="https URL of its logo.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create a frontend and print its API credentials (the secret only this once)."""
    from mno.store.db import session_scope
    from mno.tenancy import frontends

    with session_scope() as s:
        issued = frontends.create(
            s,
            name,
            customers=customers.value,
            origins=origin or [],
            brand_name=brand_name,
            from_address=from_address,
            logo_url=logo_url,
        )
        data = frontends.view(issued.frontend) | {"secret": issued.secret}
    if output is Format.table:
        success(f"frontend {name} created; the secret is shown only this once")
    render(data, output)


@app.command("list")
def list_(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List frontends by name."""
    from mno.store.db import session_scope
    from mno.tenancy import frontends

    with session_scope(write=False) as s:
        rows = [frontends.view(f) for f in frontends.list_frontends(s)]
    render_list(
        rows,
        "name",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=COLUMNS,
        empty="No frontends.",
    )


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Frontend name.")], output: OutputOpt = Format.table
) -> None:
    """Show one frontend (never its secret) and how many leads it signed up."""
    from mno.store.db import session_scope
    from mno.tenancy import frontends

    with session_scope(write=False) as s:
        frontend = frontends.get(s, name)
        data = frontends.view(frontend) | {"signups": frontends.signups(s, frontend)}
    render(data, output)


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Frontend name.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete a frontend that signed nobody up; its credentials stop working."""
    from mno.store.db import session_scope
    from mno.tenancy import frontends

    confirm(f"delete frontend {name}", yes)
    with session_scope() as s:
        frontends.delete(s, name)
    done({"name": name, "deleted": True}, f"frontend {name} deleted", output)
