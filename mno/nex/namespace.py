"""The platform namespace: a short random id of the store that Nex's Docker objects carry.

Several stores may share one Docker engine. Every container, volume and network Nex
creates carries the namespace in its name (``mno-<namespace>-…``) and in its
``mno.namespace`` label, and a store only adopts, stops or removes a container whose
labels name its own namespace and one of its own instances (``owns``).

The id is created with the store (migration ``0310_nex_iso``), so every process sharing
the store reads the same one; a store that lost the row gets a new one on first use.

Upgrade: containers, volumes and networks created before namespaces existed carry no
``mno.namespace`` label and keep their names (the instance row records them). Such a
container still belongs to the store whose instance id its ``mno.instance`` label names:
instance ids are random UUIDs, so another store cannot hold the same one.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from mno import clock
from mno.store.models.nex import NexSetting
from mno.store.types import new_id, table_of

LABEL = "mno.namespace"
KEY = "namespace"


def get(session: Session) -> str:
    """The store's namespace (created on first use when the store has none)."""
    table = table_of(NexSetting)
    query = sa.select(table.c.value).where(table.c.key == KEY)
    value = session.execute(query).scalar()
    if value is not None:
        return str(value)
    now = clock.now()
    row = {"id": new_id(), "key": KEY, "value": secrets.token_hex(4)}
    try:
        # its own transaction: the caller's may be read-only
        bind = session.get_bind()
        engine = bind.engine if isinstance(bind, sa.Connection) else bind
        with engine.connect() as conn, conn.begin():
            conn.execute(sa.insert(table).values(**row, created_at=now, updated_at=now))
    except IntegrityError:
        pass  # another process created it first
    return str(session.execute(query).scalar() or row["value"])


def owns(namespace: str, instance_id: str, labels: Mapping[str, str]) -> bool:
    """Whether a container with ``labels`` is the instance's own: the same instance id
    and this namespace (or no namespace label: made before namespaces, see module doc)."""
    if labels.get("mno.instance") != instance_id:
        return False
    found = labels.get(LABEL)
    return found is None or found == namespace
