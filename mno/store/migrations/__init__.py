"""Alembic environment and revisions of the store schema (``mno db upgrade``)."""
