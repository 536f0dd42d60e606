"""mno metric: create, list, show, update, delete (see mno.cli.billing.catalogue)."""

from mno.cli.billing.catalogue import make_app

app = make_app("Metric", "Catalogue: usage metrics and their aggregation.")
