"""Email notifications: rules over outbox events, Jinja2 templates with per-tenant overrides."""
