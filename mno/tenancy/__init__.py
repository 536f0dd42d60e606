"""Tenancy: tenants and their hierarchy, leads, the apps catalogue and access rules."""
