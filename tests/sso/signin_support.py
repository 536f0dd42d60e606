"""Helpers of the sign-in tests: light argon2 parameters, people, tenants, apps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PASSWORD = "correct horse battery"

LIGHT = """profiles:
  default:
    sso:
      argon2_time_cost: 1
      argon2_memory_kib: 8192
"""


def light_argon2(home: Path) -> None:
    """Cheaper hashes so that the tests stay fast (the defaults are documented)."""
    (home / "config.yaml").write_text(LIGHT)


def person(s: Any, email: str = "ada@example.com", password: str | None = PASSWORD) -> Any:
    from mno.access import users
    from mno.sso import passwords

    user, _ = users.create(s, email, name="Ada")
    if password is not None:
        passwords.set_password(s, email, password)
    return user


def estate(s: Any) -> dict[str, Any]:
    """Two tenants with ada as a member of both, a cloud app, a running Nex instance of
    acme and a private cloud app of globex."""
    from mno.access import members
    from mno.store.models.nex import Instance
    from mno.tenancy import apps, tenants

    tenants.create(s, "acme", name="Acme Corp")
    tenants.create(s, "globex", name="Globex")
    members.add(s, "acme", "ada@example.com", "admin")
    members.add(s, "globex", "ada@example.com", "member")
    crm, _ = apps.create(
        s, "Sales CRM", code="crm", access="any", metadata={"url": "https://crm.example.com/"}
    )
    apps.create(
        s,
        "Globex Wiki",
        code="wiki",
        owner="globex",
        access="own",
        metadata={"url": "https://wiki.example.com/"},
    )
    books, _ = apps.create(s, "Books", code="books", stack="nex", image="books:1", port=8000)
    apps.grant(s, "books", "acme")
    inst = Instance(
        name="acme-books",
        live_name="acme-books",
        tenant_id=tenants.get(s, "acme").id,
        app_id=books.id,
        image="books:1",
        port=8000,
        url="https://acme-books.apps.example.com",
        status="running",
    )
    s.add(inst)
    s.flush()
    return {"instance": inst.id}
