"""mno taxrate: create, list, show, update, delete (see mno.cli.billing_catalog)."""

from mno.cli.billing_catalog import make_app

app = make_app("TaxRate", "Catalogue: tax rates per country and region.")
