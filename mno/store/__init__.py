"""The store: engine and sessions, tables, migrations, leases, audit and outbox.

It knows nothing about HTTP, Docker or the CLI.
"""
