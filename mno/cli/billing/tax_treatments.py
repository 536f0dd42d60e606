"""mno billing tax-treatment: tenants exempt from tax or under reverse charge.

Domain and store modules are imported inside the commands, so that start-up
(``mno --help``) does not load SQLAlchemy.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render_list
from mno.cli.params import AfterOpt, AllOpt, LimitOpt
from mno.errors import BadInput

app = typer.Typer(
    help="Tenants exempt from tax or under reverse charge, per country and region.",
    no_args_is_help=True,
)
COLUMNS = ["tenant", "country", "region", "treatment", "tax_id", "note"]


def _row(s: Any, r: Any) -> dict[str, Any]:
    from mno.tenancy import tenants

    return {
        "tenant": tenants.get(s, r.tenant_id).key,
        "country": r.country,
        "region": r.region or None,
        "treatment": r.treatment,
        "tax_id": r.tax_id,
        "note": r.note,
    }


@app.command("set")
def set_(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    country: Annotated[str, typer.Option(help="ISO 3166 country, e.g. DE.")],
    exempt: Annotated[bool, typer.Option("--exempt", help="No tax at all.")] = False,
    reverse_charge: Annotated[
        bool, typer.Option("--reverse-charge", help="The customer accounts for the tax.")
    ] = False,
    region: Annotated[str | None, typer.Option(help="Only this region.")] = None,
    tax_id: Annotated[str | None, typer.Option(help="The tenant's tax id (VAT number).")] = None,
    note: Annotated[str | None, typer.Option(help="Text added to the invoice note.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Exempt TENANT from tax, or put it under reverse charge, in a country (or region)."""
    from mno.billing import tax
    from mno.store.db import session_scope

    if exempt == reverse_charge:
        raise BadInput("give one of --exempt or --reverse-charge")
    treatment = "exempt" if exempt else "reverse_charge"
    with session_scope() as s:
        row = tax.set_treatment(
            s, tenant, country, treatment, region=region, tax_id=tax_id, note=note
        )
        data = _row(s, row)
    done(data, f"{tenant}: {treatment} in {data['country']}", output)


@app.command("remove")
def remove(
    tenant: Annotated[str, typer.Argument(help="Tenant key.")],
    country: Annotated[str, typer.Option(help="ISO 3166 country.")],
    region: Annotated[str | None, typer.Option(help="Region.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Tax TENANT normally again in a country (or region)."""
    from mno.billing import tax
    from mno.store.db import session_scope

    with session_scope() as s:
        tax.remove_treatment(s, tenant, country, region)
    done({"tenant": tenant, "country": country.upper(), "region": region}, "removed", output)


@app.command("list")
def list_(
    tenant: Annotated[str | None, typer.Option(help="Tenant key.")] = None,
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List tax treatments."""
    from mno.billing import tax
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = [_row(s, r) for r in tax.list_treatments(s, tenant)]
    render_list(
        rows,
        ("tenant", "country", "region"),
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=COLUMNS,
    )
