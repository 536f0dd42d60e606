"""mno tenant: create, list, show, update, provision, suspend, resume, offboard, contacts.

Domain modules, the store and ``mno.cli.params`` are imported inside the commands that
use them: `mno tenant --help` then starts without SQLAlchemy.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mno.cli.output import (
    Format,
    OutputOpt,
    done,
    render,
    render_list,
    render_page,
    render_stream,
    spinner,
    success,
)
from mno.cli.params import (
    AfterOpt,
    AllOpt,
    DryRunOpt,
    LimitOpt,
    YesOpt,
    confirm,
    write_session,
)
from mno.errors import MnoError
from mno.settings import parse_duration

app = typer.Typer(help="Manage tenants (customers) and their contacts.", no_args_is_help=True)
contact_app = typer.Typer(help="Manage a tenant's contacts.", no_args_is_help=True)
app.add_typer(contact_app, name="contact")

LIST_COLUMNS = ["key", "name", "tier", "status", "parent", "currency", "domains"]


@app.command("create")
def create(
    key: Annotated[str, typer.Argument(help="Tenant key: a DNS label, 2-40 chars [a-z0-9-].")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the key).")] = None,
    tier: Annotated[str, typer.Option(help="pooled, silo or a declared tier.")] = "pooled",
    parent: Annotated[str | None, typer.Option(help="Managing tenant's key.")] = None,
    domain: Annotated[list[str] | None, typer.Option(help="A domain; repeat for more.")] = None,
    currency: Annotated[str, typer.Option(help="Billing currency (ISO 4217).")] = "USD",
    timezone: Annotated[str, typer.Option(help="IANA timezone.")] = "UTC",
    address: Annotated[str | None, typer.Option(help="Street address.")] = None,
    city: Annotated[str | None, typer.Option(help="City.")] = None,
    zip: Annotated[str | None, typer.Option("--zip", help="Postal code.")] = None,
    region: Annotated[str | None, typer.Option(help="Region or state.")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 country.")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="Free-form K=V; repeatable.")
    ] = None,
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="Succeed if the key already exists.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Create a tenant in pending_provision."""
    from mno.cli.params import pairs
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import tenants as remote

        fields = {
            "key": key,
            "name": name,
            "tier": tier,
            "parent": parent,
            "domains": domain or [],
            "currency": currency,
            "timezone": timezone,
            "address": address,
            "city": city,
            "zip": zip,
            "region": region,
            "country": country,
            "metadata": pairs(metadata, "metadata"),
        }
        data, created = remote.create(client, fields, if_not_exists=if_not_exists)
        if output is Format.table:
            success(f"tenant {key} {'created' if created else 'already exists'}")
        render(data, output)
        return

    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope() as s:
        tenant, created = tenants.create(
            s,
            key,
            name=name,
            tier=tier,
            parent=parent,
            domains=domain or [],
            currency=currency,
            timezone=timezone,
            address=address,
            city=city,
            zip=zip,
            region=region,
            country=country,
            metadata=pairs(metadata, "metadata"),
            if_not_exists=if_not_exists,
        )
        view = tenants.view(s, tenant)
    if output is Format.table:
        success(f"tenant {key} {'created' if created else 'already exists'}")
    render(view, output)


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    tier: Annotated[str | None, typer.Option(help="Only this tier.")] = None,
    parent: Annotated[str | None, typer.Option(help="Only tenants managed by this key.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List tenants, by key."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.cli.remote import unsupported
        from mno.remote import tenants as remote

        if tier is not None:
            unsupported("--tier")
        if all_:
            rows = remote.stream(client, status=status, parent=parent, after=after)
            render_stream(rows, output, columns=LIST_COLUMNS, empty="No tenants.")
            return
        found, cursor = remote.page(client, status=status, parent=parent, after=after, limit=limit)
        render_page(found, cursor, output, columns=LIST_COLUMNS, empty="No tenants.")
        return
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(write=False) as s:
        if all_:
            rows = tenants.stream_tenant_dicts(
                s, status=status, tier=tier, parent=parent, after=after
            )
            render_stream(rows, output, columns=LIST_COLUMNS, empty="No tenants.")
            return
        page = tenants.page_tenants(
            s, status=status, tier=tier, parent=parent, after=after, limit=limit
        )
    render_page(page.rows, page.next, output, columns=LIST_COLUMNS, empty="No tenants.")


@app.command("show")
def show(
    key: Annotated[str, typer.Argument(help="Tenant key or id.")],
    output: OutputOpt = Format.table,
) -> None:
    """Show one tenant."""
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import tenants as remote

        render(remote.get(client, key), output)
        return
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(write=False) as s:
        view = tenants.view(s, tenants.get(s, key))
    render(view, output)


@app.command("update")
def update(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    tier: Annotated[str | None, typer.Option(help="pooled, silo or a declared tier.")] = None,
    parent: Annotated[str | None, typer.Option(help="New managing tenant.")] = None,
    domain: Annotated[
        list[str] | None, typer.Option(help="Replace the domains; repeat for more.")
    ] = None,
    currency: Annotated[str | None, typer.Option(help="Billing currency.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA timezone.")] = None,
    address: Annotated[str | None, typer.Option(help="Street address.")] = None,
    city: Annotated[str | None, typer.Option(help="City.")] = None,
    zip: Annotated[str | None, typer.Option("--zip", help="Postal code.")] = None,
    region: Annotated[str | None, typer.Option(help="Region or state.")] = None,
    country: Annotated[str | None, typer.Option(help="ISO 3166-1 alpha-2 country.")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", help="Replace metadata: K=V, repeatable.")
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Change a tenant's fields."""
    from mno.cli.params import pairs
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import tenants as remote

        fields = {
            "name": name,
            "tier": tier,
            "parent": parent,
            "domains": domain,
            "currency": currency,
            "timezone": timezone,
            "address": address,
            "city": city,
            "zip": zip,
            "region": region,
            "country": country,
            "metadata": pairs(metadata, "metadata") if metadata is not None else None,
        }
        render(remote.update(client, key, fields), output)
        return
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope() as s:
        tenant = tenants.update(
            s,
            key,
            parent=parent,
            domains=domain,
            name=name,
            tier=tier,
            currency=currency,
            timezone=timezone,
            address=address,
            city=city,
            zip=zip,
            region=region,
            country=country,
            metadata=pairs(metadata, "metadata") if metadata is not None else None,
        )
        view = tenants.view(s, tenant)
    render(view, output)


def _transition(key: str, action: str, output: Format, **kwargs: str) -> None:
    from mno.cli.remote import hub

    if (client := hub()) is not None:
        from mno.remote import tenants as remote

        data = remote.transition(client, key, action, **kwargs)
        if output is Format.table:
            success(f"tenant {key} is {data['status']}")
        render(data, output)
        return
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope() as s:
        tenant = getattr(tenants, action)(s, key, **kwargs)
        view = tenants.view(s, tenant)
    if output is Format.table:
        success(f"tenant {key} is {view.tenant.status}")
    render(view, output)


def _wait_status(key: str, waiting: str, timeout: str) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    deadline = time.monotonic() + parse_duration(timeout).total_seconds()
    with spinner(f"waiting for {key}"):
        while True:
            with session_scope(write=False) as s:
                tenant = tenants.get(s, key)
                status, reason = tenant.status, tenant.status_reason
            if status != waiting:
                if status == "provision_failed":
                    raise MnoError(f"tenant {key} provision_failed: {reason}")
                return
            if time.monotonic() >= deadline:
                raise MnoError(
                    f"tenant {key} is still {status} after {timeout}",
                    "is a provisioner running? see `mno agents status`",
                )
            time.sleep(0.25)


@app.command("provision")
def provision(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the tenant is active or failed.")
    ] = False,
    timeout: Annotated[str, typer.Option(help="How long --wait waits.")] = "10m",
    output: OutputOpt = Format.table,
) -> None:
    """Provision a tenant in its tier's mode (platform YAML `tiers`): none moves it to
    active; docker creates its Nex instances; external requests a signed callback."""
    from mno.nex import provisioning
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope() as s:
        result = provisioning.provision(s, key)
    if wait:
        _wait_status(key, "provisioning", timeout)
    with session_scope(write=False) as s:
        view = tenants.view(s, tenants.get(s, key))
    if output is Format.table:
        success(f"tenant {key} is {view.tenant.status} (mode {result['mode']})")
    render(view, output)


@app.command("suspend")
def suspend(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    reason: Annotated[str, typer.Option(help="Why, e.g. arrears.")],
    output: OutputOpt = Format.table,
) -> None:
    """Suspend an active tenant."""
    _transition(key, "suspend", output, reason=reason)


@app.command("resume")
def resume(
    key: Annotated[str, typer.Argument(help="Tenant key.")], output: OutputOpt = Format.table
) -> None:
    """Resume a suspended tenant."""
    _transition(key, "resume", output)


@app.command("offboard")
def offboard(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until every instance is terminated.")
    ] = False,
    timeout: Annotated[str, typer.Option(help="How long --wait waits.")] = "10m",
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Offboard a tenant: terminate its instances (a final backup of each volume is kept
    under $MNO_HOME/backups/), remove its network, then offboarded."""
    from mno.nex import provisioning
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    if not dry_run:
        confirm(f"offboard tenant {key}", yes)
    with write_session(dry_run) as s:
        result = provisioning.offboard(s, key)
    if dry_run:
        terminating = ", ".join(result["terminating"]) or "none"
        done(
            result | {"dry_run": True},
            f"dry run: tenant {key} would be {result['status']}; "
            f"instances to terminate: {terminating}; nothing was written",
            output,
        )
        return
    if wait:
        _wait_status(key, "offboarding", timeout)
    with session_scope(write=False) as s:
        view = tenants.view(s, tenants.get(s, key))
    if output is Format.table:
        success(f"tenant {key} is {view.tenant.status}")
    render(view, output)


@app.command("delete")
def delete(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete an offboarded (or never provisioned) tenant."""
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    confirm(f"delete tenant {key}", yes)
    with session_scope() as s:
        tenants.delete(s, key)
    done({"tenant": key, "deleted": True}, f"tenant {key} deleted", output)


@contact_app.command("add")
def contact_add(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    name: Annotated[str, typer.Option(help="Contact name.")],
    email: Annotated[str, typer.Option(help="Contact email.")],
    type: Annotated[str, typer.Option(help="admin, billing, technical or other.")] = "admin",
    primary: Annotated[
        bool, typer.Option("--primary", help="Make it the primary contact.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Add a contact to a tenant."""
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope() as s:
        contact = tenants.add_contact(s, key, name=name, email=email, type=type, primary=primary)
    render(contact, output, columns=["name", "email", "type", "primary"])


@contact_app.command("list")
def contact_list(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List a tenant's contacts."""
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(write=False) as s:
        contacts = tenants.list_contacts(s, key)
    render_list(
        contacts,
        "email",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=["name", "email", "type", "primary"],
        empty="No contacts.",
    )


@contact_app.command("remove")
def contact_remove(
    key: Annotated[str, typer.Argument(help="Tenant key.")],
    email: Annotated[str, typer.Argument(help="Contact email.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Remove a contact from a tenant."""
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    confirm(f"remove contact {email} from tenant {key}", yes)
    with session_scope() as s:
        tenants.remove_contact(s, key, email)
    done({"tenant": key, "email": email, "removed": True}, f"{email} removed from {key}", output)
