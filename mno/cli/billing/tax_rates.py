"""mno tax-rate: create, list, show, update, delete (see mno.cli.billing.catalogue)."""

from mno.cli.billing.catalogue import make_app

app = make_app("TaxRate", "Catalogue: tax rates per country and region.")
