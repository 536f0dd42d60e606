"""mno coupon: create, list, show, update, delete (see mno.cli.billing.catalogue)."""

from mno.cli.billing.catalogue import make_app

app = make_app("Coupon", "Catalogue: coupons (percentage or fixed; once, repeating, forever).")
