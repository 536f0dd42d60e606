"""mno lead: sign-ups verified by email before they become tenants.

Domain modules and the store are imported inside the commands that use them:
`mno lead --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, info, render, render_page, render_stream, success
from mno.cli.params import AfterOpt, AllOpt, LimitOpt

app = typer.Typer(
    help="Manage leads: create, verify and convert them into tenants.", no_args_is_help=True
)

COLUMNS = ["id", "email", "company", "status", "created_at"]


@app.command("create")
def create(
    email: Annotated[str, typer.Option(help="The lead's email address.")],
    first_name: Annotated[str, typer.Option(help="First name.")],
    last_name: Annotated[str, typer.Option(help="Last name.")],
    company: Annotated[str, typer.Option(help="Company name.")],
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 country.")] = None,
    city: Annotated[str | None, typer.Option(help="City.")] = None,
    zip: Annotated[str | None, typer.Option("--zip", help="Postal code.")] = None,
    address: Annotated[str | None, typer.Option(help="Street address.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Record a lead and send (or show once) its verification code."""
    from mno.store.db import session_scope
    from mno.tenancy import leads

    with session_scope() as s:
        created = leads.create(
            s,
            email=email,
            first_name=first_name,
            last_name=last_name,
            company=company,
            country=country,
            city=city,
            zip=zip,
            address=address,
        )
        data = leads.view(created.lead)
    if created.verification_code is not None:
        data["verification_code"] = created.verification_code
    if output is Format.table:
        if created.emailed:
            success(
                f"lead {data['id']} created; the dispatcher emails the verification code to {email}"
            )
        else:
            success(f"lead {data['id']} created")
            info("No SMTP is configured, so the code is shown here once.")
    render(data, output)


@app.command("verify")
def verify(
    lead_id: Annotated[str, typer.Argument(help="Lead id.")],
    code: Annotated[str, typer.Option(help="The verification code.")],
    output: OutputOpt = Format.table,
) -> None:
    """Verify a lead's email with its code (five wrong codes lock the lead)."""
    from mno.store.db import session_scope
    from mno.tenancy import leads

    with session_scope() as s:  # a wrong attempt is recorded, so commit either way
        lead, error = leads.verify_attempt(s, lead_id, code)
        data = leads.view(lead)
    if error is not None:
        raise error
    if output is Format.table:
        success(f"lead {lead_id} verified")
    render(data, output)


@app.command("convert")
def convert(
    lead_id: Annotated[str, typer.Argument(help="Lead id.")],
    key: Annotated[str, typer.Option(help="The new tenant's key.")],
    domain: Annotated[list[str], typer.Option(help="A tenant domain; repeat for more.")],
    name: Annotated[str | None, typer.Option(help="Tenant name (default: the company).")] = None,
    tier: Annotated[str, typer.Option(help="pooled, silo or a declared tier.")] = "pooled",
    currency: Annotated[str, typer.Option(help="Billing currency.")] = "USD",
    timezone: Annotated[str, typer.Option(help="IANA timezone.")] = "UTC",
    skip_domain_check: Annotated[
        bool,
        typer.Option("--skip-domain-check", help="Allow an email domain outside --domain."),
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Convert a verified lead into a tenant in pending_provision."""
    from mno.store.db import session_scope
    from mno.tenancy import leads, tenants

    with session_scope() as s:
        tenant = leads.convert(
            s,
            lead_id,
            key=key,
            domains=domain,
            name=name,
            tier=tier,
            skip_domain_check=skip_domain_check,
            currency=currency,
            timezone=timezone,
        )
        view = tenants.view(s, tenant)
    if output is Format.table:
        success(f"lead {lead_id} converted into tenant {key}")
    render(view, output)


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="pending, verified, locked or converted.")
    ] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List leads, newest first."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import leads as remote

        if all_:
            every = remote.stream(client, status=status, after=after)
            render_stream(every, output, columns=COLUMNS, empty="No leads.")
            return
        shown, cursor = remote.page(client, status=status, after=after, limit=limit)
        render_page(shown, cursor, output, columns=COLUMNS, empty="No leads.")
        return
    from mno.store.db import session_scope
    from mno.tenancy import leads

    with session_scope(write=False) as s:
        if all_:
            found = leads.stream_leads(s, status=status, after=after)
            rows = (leads.view(lead) for lead in found)
            render_stream(rows, output, columns=COLUMNS, empty="No leads.")
            return
        page = leads.page_leads(s, status=status, after=after, limit=limit)
        views = [leads.view(lead) for lead in page.rows]
    render_page(views, page.next, output, columns=COLUMNS, empty="No leads.")


@app.command("show")
def show(
    lead_id: Annotated[str, typer.Argument(help="Lead id.")], output: OutputOpt = Format.table
) -> None:
    """Show one lead."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import leads as remote

        render(remote.get(client, lead_id), output)
        return
    from mno.store.db import session_scope
    from mno.tenancy import leads

    with session_scope(write=False) as s:
        data = leads.view(leads.get(s, lead_id))
    render(data, output)
