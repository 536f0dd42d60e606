"""mno plan: create, list, show, update, delete (see mno.cli.billing_catalog)."""

from mno.cli.billing_catalog import make_app

app = make_app("Plan", "Catalogue: versioned plans and their charges.")
