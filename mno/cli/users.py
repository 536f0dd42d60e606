"""mno user: users and their personal tokens.

Domain modules and the store are imported inside the commands that use them:
`mno user --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_page, render_stream, success
from mno.cli.params import AfterOpt, AllOpt, LimitOpt
from mno.cli.user_signin import mfa_app, password_app

app = typer.Typer(help="Manage users and their personal tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Issue and revoke a user's personal tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(password_app, name="password")
app.add_typer(mfa_app, name="mfa")


@app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="Succeed if the email already exists.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Create a user."""
    from mno.access import users
    from mno.store.db import session_scope

    with session_scope() as s:
        user, created = users.create(s, email, name=name, if_not_exists=if_not_exists)
        data = users.as_dict(user)
    if output is Format.table:
        success(f"user {data['email']} {'created' if created else 'already exists'}")
    render(data, output)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Only members of this tenant.")] = None,
    status: Annotated[str | None, typer.Option(help="active or disabled.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List users, by email."""
    from mno.access import users
    from mno.store.db import session_scope

    columns = ["email", "name", "status", "created_at"]
    with session_scope(write=False) as s:
        if all_:
            found = users.stream_users(s, tenant=tenant, status=status, after=after)
            render_stream((users.as_dict(u) for u in found), output, columns=columns)
            return
        page = users.page_users(s, tenant=tenant, status=status, after=after, limit=limit)
        rows = [users.as_dict(u) for u in page.rows]
    render_page(rows, page.next, output, columns=columns)


@app.command("show")
def show(
    email: Annotated[str, typer.Argument(help="Email or id.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show a user, whether they have a password and a second factor, their memberships
    and tokens (never the token values)."""
    from mno.access import tokens, users
    from mno.sso import passwords
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        user = users.get(s, email)
        data = users.as_dict(user)
        data.update(passwords.factors(s, user))
        data["memberships"] = users.memberships(s, user)
        data["tokens"] = tokens.list_tokens(s, user.email)
    render(data, output)


@app.command("disable")
def disable(
    email: Annotated[str, typer.Argument(help="Email or id.")],
    output: OutputOpt = Format.table,
) -> None:
    """Disable a user: every check and token of theirs is refused from now on."""
    from mno.access import users
    from mno.store.db import session_scope

    with session_scope() as s:
        data = users.as_dict(users.set_status(s, email, "disabled"))
    done(data, f"user {data['email']} disabled", output)


@app.command("enable")
def enable(
    email: Annotated[str, typer.Argument(help="Email or id.")],
    output: OutputOpt = Format.table,
) -> None:
    """Enable a disabled user."""
    from mno.access import users
    from mno.store.db import session_scope

    with session_scope() as s:
        data = users.as_dict(users.set_status(s, email, "active"))
    done(data, f"user {data['email']} enabled", output)


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    ttl: Annotated[str | None, typer.Option(help="Lifetime, e.g. 1h or 30d.")] = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="An API scope, e.g. tenants:read (repeatable; default: all the roles reach).",
        ),
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Issue a personal token; it is printed once and only its hash is kept."""
    from mno.access import tokens
    from mno.store.db import session_scope

    with session_scope() as s:
        issued = tokens.create(s, email, ttl=ttl, name=name, scopes=scope)
    data = {**issued.view, "token": issued.secret}
    if output is Format.table:
        success(f"token {data['id']} issued; it is shown only this once")
    render(data, output)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see `mno user show`).")],
    output: OutputOpt = Format.table,
) -> None:
    """Revoke a personal token at once."""
    from mno.access import tokens
    from mno.store.db import session_scope

    with session_scope() as s:
        data = tokens.revoke(s, token_id)
    done(data, f"token {data['id']} revoked", output)
