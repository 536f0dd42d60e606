"""mno notify: email notification rules and templates.

Domain modules and the store are imported inside the commands that use them:
`mno notify --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_list
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm

app = typer.Typer(help="Email notifications: rules and templates.", no_args_is_help=True)
rule_app = typer.Typer(help="Which events are emailed to whom.", no_args_is_help=True)
template_app = typer.Typer(help="Jinja2 email templates and overrides.", no_args_is_help=True)
app.add_typer(rule_app, name="rule")
app.add_typer(template_app, name="template")


@rule_app.command("add")
def rule_add(
    events: Annotated[str, typer.Option(help="Event filters, e.g. 'invoice.issued,tenant.*'.")],
    email_to: Annotated[str, typer.Option("--email-to", help="tenant-primary or an address.")],
    template: Annotated[str, typer.Option(help="Template name (see `notify template list`).")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's events.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Email matching events with a template."""
    from mno.notify import rules
    from mno.store.db import session_scope

    with session_scope() as s:
        data = rules.view(
            rules.add(s, events=events, email_to=email_to, template=template, tenant=tenant)
        )
    done(data, f"rule {data['id']} added", output)


@rule_app.command("list")
def rule_list(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List rules."""
    from mno.notify import rules
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = [rules.view(r) for r in rules.list_rules(s)]
    render_list(
        rows,
        "id",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=["id", "events", "email_to", "template", "tenant_id"],
        empty="No rules.",
    )


@rule_app.command("delete")
def rule_delete(
    rule_id: Annotated[str, typer.Argument()],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete a rule."""
    from mno.notify import rules
    from mno.store.db import session_scope

    confirm(f"delete notification rule {rule_id}", yes)
    with session_scope() as s:
        rules.delete(s, rule_id)
    done({"id": rule_id, "deleted": True}, f"rule {rule_id} deleted", output)


@template_app.command("list")
def template_list(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """The built-in templates."""
    from mno.notify import templates

    render_list(
        [{"name": n} for n in templates.BUILTIN],
        "name",
        output,
        limit=limit,
        after=after,
        all_=all_,
    )


@template_app.command("show")
def template_show(
    name: Annotated[str, typer.Argument()],
    tenant: Annotated[str | None, typer.Option(help="The template this tenant gets.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Print a template's source (the tenant's override if any); -o json gives the subject
    and body apart."""
    from mno.notify import templates
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        tid = None
        if tenant:
            from mno.tenancy import tenants

            tid = tenants.get(s, tenant).id
        subject, body = templates.source(s, name, tid)
    if output is not Format.table:
        render({"name": name, "tenant": tenant, "subject": subject, "body": body}, output)
        return
    typer.echo(f"Subject: {subject}\n{body}", nl=False)


@template_app.command("set")
def template_set(
    name: Annotated[str, typer.Argument()],
    file: Annotated[
        typer.FileText, typer.Option("--file", "-f", help="Template file ('Subject:' first line).")
    ],
    tenant: Annotated[str | None, typer.Option(help="Override for this tenant only.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Override a template, platform-wide or for one tenant."""
    from mno.notify import templates
    from mno.store.db import session_scope

    with session_scope() as s:
        tid = None
        if tenant:
            from mno.tenancy import tenants

            tid = tenants.get(s, tenant).id
        templates.set_override(s, name, file.read(), tid)
    done({"name": name, "tenant": tenant}, f"template {name} set", output)
