"""GitOps fixtures: files written from text, an emptied store, store row counts."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """``write("tenants/a.yaml", text)`` writes a dedented file under a docs directory."""
    root = tmp_path / "docs"
    root.mkdir()

    def writer(name: str, text: str) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    writer.root = root  # type: ignore[attr-defined]
    return writer


def empty_store(url: str) -> None:
    """Delete every row (PostgreSQL: TRUNCATE; SQLite: DELETE in reverse FK order)."""
    from sqlmodel import SQLModel

    from mno.store.models import load_all

    load_all()
    from mno.store import db
    from tests.conftest import truncate_all

    if not db.is_sqlite(url):
        truncate_all(url)
        return
    engine = db.get_engine(url)
    with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            conn.exec_driver_sql(f'DELETE FROM "{table.name}"')


def row_counts(url: str) -> dict[str, int]:
    """Rows per table: a nothing-was-written check compares these."""
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    from mno.store.models import load_all

    load_all()
    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in SQLModel.metadata.sorted_tables
            if sa.inspect(conn).has_table(t.name)
        }


TENANTS = """
apiVersion: mno.io/v1
kind: Tenant
metadata:
  name: acme
  labels: {segment: reseller}
  annotations: {mno.io/protect: "true"}
spec:
  name: Acme Corp
  tier: silo
  domains: [acme.example.com]
  currency: EUR
  timezone: Europe/Paris
  country: FR
---
kind: Tenant
metadata: {name: acme-shop}
spec:
  name: Acme Shop
  parent: acme
  address: 1 rue de la Paix
  city: Paris
---
kind: Tenant
metadata: {name: globex}
spec:
  name: Globex
  domains: [globex.example.com, www.globex.example.com]
  metadata: {crm_id: G-1}
  contacts:
    - {name: Ann Admin, email: ann@globex.example.com, primary: true}
    - {name: Bill Payer, email: bill@globex.example.com, type: billing}
"""

APPS = """
kind: App
metadata: {name: crm}
spec: {name: CRM, access: any}
---
kind: App
metadata: {name: wiki, labels: {team: web}}
spec:
  name: Wiki
  stack: nex
  image: nginx:1.27-alpine
  port: 80
  memory: 256m
  cpus: 0.5
  env: {DB_PASSWORD: "secret:WIKI_DB"}
---
kind: App
metadata: {name: portal}
spec:
  name: Portal
  owner: acme
  access: explicit
  enabled: false
  grants: [{tenant: globex, can_edit: true}, {tenant: acme-shop}]
"""
