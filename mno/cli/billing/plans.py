"""mno plan: create, list, show, update, delete (see mno.cli.billing.catalogue)."""

from mno.cli.billing.catalogue import make_app

app = make_app("Plan", "Catalogue: versioned plans and their charges.")
