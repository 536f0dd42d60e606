"""Alembic revisions, frozen once released: they import nothing from mno but the store."""
