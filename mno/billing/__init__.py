"""Billing: catalogue, subscriptions, usage, one-off charges, billing runs, invoices, ledger."""
