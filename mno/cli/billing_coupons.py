"""mno coupon: create, list, show, update, delete (see mno.cli.billing_catalog)."""

from mno.cli.billing_catalog import make_app

app = make_app("Coupon", "Catalogue: coupons (percentage or fixed; once, repeating, forever).")
