"""mno access: ask whether a user may do something in a tenant.

The access check and the store are imported inside the command: `mno access --help`
then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, render

app = typer.Typer(help="Check what members may do.", no_args_is_help=True)


@app.command("check")
def check(
    user: Annotated[str, typer.Argument(help="User email.")],
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    action: Annotated[
        str,
        typer.Argument(
            help="read, sync, open, invite, purchase, "
            "manage_members, manage_instances, manage_teams, "
            "manage_billing, update_tenant or delete_tenant."
        ),
    ],
    instance: Annotated[str | None, typer.Option(help="Instance id (for open).")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Answer allowed or denied, with the reason (exit 0 either way)."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        body = {"user": user, "tenant": tenant, "action": action, "instance": instance}
        answer = client.post("/v1/hub/access/check", body)
        allowed, reason = bool(answer["allowed"]), str(answer["reason"])
    else:
        from mno.access.check import check as run
        from mno.store.db import session_scope

        with session_scope(write=False) as s:
            allowed, reason = run(s, user, tenant, action, instance)
    data = {
        "user": user,
        "tenant": tenant,
        "action": action,
        "instance": instance,
        "allowed": allowed,
        "reason": reason,
    }
    if output is Format.table:
        typer.echo(f"{'allowed' if allowed else 'denied'}: {reason}")
        return
    render(data, output)
