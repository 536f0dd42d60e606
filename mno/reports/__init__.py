"""Reports (Impac): platform KPIs computed in SQL on SQLite and PostgreSQL.

Each area (revenue, tenants, invoices, instances, webhooks, sync) is a function in
``kpis.py`` that takes a session and a ``Window`` and returns a ``Report``: headline
metrics, detail tables and month-by-month series. Aggregation always happens in the
database; Python only fills empty months and formats. ``html.py`` renders the reports as one
self-contained page with inline SVG charts; the CLI renders them with rich.
"""
