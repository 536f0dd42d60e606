"""mno invite: invite people into a tenant (staged -> pending -> accepted).

Domain modules and the store are imported inside the commands that use them:
`mno invite --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.members import AsOpt
from mno.cli.output import Format, OutputOpt, done, render, render_list, success, warn
from mno.cli.params import AfterOpt, AllOpt, LimitOpt

app = typer.Typer(help="Invite users into a tenant.", no_args_is_help=True)


def _issued(view: dict[str, object], token: str | None, output: Format) -> None:
    from mno.access import invites

    data = {**view, "token": token}
    if token:
        try:
            if invites.deliver(view, token):
                data["mailed"] = True
        except Exception as exc:  # noqa: BLE001 - the invite stands; mail is best effort
            warn(f"could not mail the invite: {exc}")
    if output is Format.table:
        success(
            f"invite {view['id']} is {view['status']}"
            + ("; its token is shown only this once" if token else "")
        )
    render(data, output)


@app.command("create")
def create(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    email: Annotated[str, typer.Argument(help="Invitee email.")],
    role: Annotated[str, typer.Option(help="member, power_user, admin or super_admin.")] = "member",
    team: Annotated[str | None, typer.Option(help="Team to join on acceptance.")] = None,
    stage: Annotated[bool, typer.Option("--stage", help="Stage it; send later.")] = False,
    as_: AsOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Invite a user; prints the single-use token once (and mails it when SMTP is set)."""
    from mno.access import invites
    from mno.store.db import session_scope

    with session_scope() as s:
        issued = invites.create(s, tenant, email, role, team=team, by=as_, stage=stage)
    _issued(issued.view, issued.token, output)


@app.command("send")
def send(
    invite_id: Annotated[str, typer.Argument(help="Invite id.")],
    as_: AsOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Send a staged invite (it becomes pending and gets its token)."""
    from mno.access import invites
    from mno.store.db import session_scope

    with session_scope() as s:
        issued = invites.send(s, invite_id, by=as_)
    _issued(issued.view, issued.token, output)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Argument(help="Tenant key (default: all).")] = None,
    status: Annotated[
        str | None, typer.Option(help="staged, pending, expired, accepted or revoked.")
    ] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List invites."""
    from mno.access import invites
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = invites.list_invites(s, tenant, status=status)
    render_list(
        rows,
        "id",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=["id", "tenant", "email", "role", "team", "status", "expires_at"],
    )


@app.command("accept")
def accept(
    token: Annotated[str, typer.Argument(help="The invite token.")],
    name: Annotated[str, typer.Option(help="Your name, for a new user.")] = "",
    output: OutputOpt = Format.table,
) -> None:
    """Accept an invite with its token (works once)."""
    from mno.access import invites
    from mno.store.db import session_scope

    with session_scope() as s:
        data = invites.accept(s, token, name=name)
    done(data, f"{data['email']} joined {data['tenant']} as {data['role']}", output)


@app.command("revoke")
def revoke(
    invite_id: Annotated[str, typer.Argument(help="Invite id.")],
    as_: AsOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Revoke a staged or pending invite."""
    from mno.access import invites
    from mno.store.db import session_scope

    with session_scope() as s:
        data = invites.as_dict(s, invites.revoke(s, invite_id, by=as_))
    done(data, f"invite {invite_id} revoked", output)
