"""Billing: catalogue, subscriptions, usage, one-off charges, billing runs, invoices, ledger.

- ``documents`` creates and updates the catalogue from YAML (shared with GitOps);
  ``catalogue`` lists, gets and deletes its objects (metrics, plans, coupons, tax rates).
- ``subscriptions``, ``usage`` (``usage_batch`` for many posts) and ``charges``: what
  tenants are billed for. ``tax``: tenants' exemptions and reverse charge.
- ``periods``: billing periods in a tenant's timezone. ``rating``: the price of one charge
  (tiers, packages, rounding). ``tenant_rating``: one tenant's lines, discounts, tax and
  total for a run.
- ``run``: billing runs, which write draft invoices; ``issuing``: issue a run's drafts.
- ``invoices``: the invoice lifecycle (issue, pay, void, overdue); ``ledger``: the
  tenant's running balance and prepaid credits; ``export``: invoice views and exports.
"""
