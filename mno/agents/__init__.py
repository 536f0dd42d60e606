"""Agent daemons: one module per agent, each with ``tick(ctx) -> TickResult``.

Scheduling lives in one place, ``mno.agents.runner``. ``mno agents tick NAME`` runs one
pass of one agent for cron-style hosts.
"""
