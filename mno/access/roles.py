"""Roles and the rules between them (MnoHub's ability model), as pure functions.

- any member may ``read`` the tenant and trigger ``sync``;
- ``admin`` and ``super_admin`` may ``invite``, ``purchase``, ``manage_members``,
  ``manage_instances`` and ``manage_teams``;
- only ``super_admin`` may ``manage_billing``, ``update_tenant`` or ``delete_tenant``;
- ``open`` (an app instance) is for admins, for members in no team, and for members of a
  team that includes the instance (decided in ``mno.access.check``).
"""

from __future__ import annotations

ROLES = ("member", "power_user", "admin", "super_admin")
RANK = {role: i for i, role in enumerate(ROLES)}
ADMINS = ("admin", "super_admin")

ACTIONS: dict[str, tuple[str, ...]] = {
    "read": ROLES,
    "sync": ROLES,
    "open": ROLES,
    "invite": ADMINS,
    "purchase": ADMINS,
    "manage_members": ADMINS,
    "manage_instances": ADMINS,
    "manage_teams": ADMINS,
    "manage_billing": ("super_admin",),
    "update_tenant": ("super_admin",),
    "delete_tenant": ("super_admin",),
}


def allows(role: str, action: str) -> bool:
    return role in ACTIONS.get(action, ())


def may_grant(actor_role: str | None, target_role: str, current_role: str | None) -> str | None:
    """Why ``actor_role`` may not set ``target_role`` on someone holding ``current_role``
    (None when allowed). ``actor_role=None`` is the platform operator."""
    if actor_role is None:
        return None
    if actor_role not in ADMINS:
        return f"a {actor_role} cannot manage members"
    if actor_role == "admin" and target_role == "super_admin":
        return "an admin cannot grant super_admin"
    if actor_role == "admin" and current_role == "super_admin":
        return "an admin cannot change a super_admin"
    return None
