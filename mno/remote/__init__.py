"""A client of a hub's HTTP API (``/v1/hub/...``) for the remote CLI mode.

``mno --server URL --token T …`` sends the CLI's commands to a hub instead of opening a
store. This package is domain-free: it speaks HTTP with httpx, turns problem+json answers
into the domain's errors (``mno.errors``) and returns the plain dicts the domain's views
render to, so the CLI prints the same output either way.
"""
