"""mno metric: create, list, show, update, delete (see mno.cli.billing_catalog)."""

from mno.cli.billing_catalog import make_app

app = make_app("Metric", "Catalogue: usage metrics and their aggregation.")
