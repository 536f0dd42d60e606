"""Impac: KPIs on each tenant's business data (finance, sales, HR) over its canonical
records, in SQL on SQLite and PostgreSQL, as widgets, terminal tables and an HTML page."""
