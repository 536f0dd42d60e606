"""MnoHub access: users, memberships and roles, teams, invites, app API keys, user tokens.

``check(session, user, tenant, action, instance=None) -> (allowed, reason)`` is the one
place that answers "may this user do this in this tenant"; the IDM API asks it too.
"""
