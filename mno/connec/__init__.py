"""Connec: apps share a tenant's business data (canonical records of the sync engine)."""
