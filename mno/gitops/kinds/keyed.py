"""A base for kinds whose store rows have no natural key (webhook endpoints, rules).

The document's ``metadata.name`` is linked to the row's id by the ownership row
(``target_id``). A row never applied from documents gets a stable synthetic name,
``<prefix>-<first 12 hex digits of its id>``, so it can be exported, diffed and adopted.

Store models and domain modules are imported inside the methods that use them: the registry
imports every adapter, and a command that touches one kind should not build every area's
tables.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa
from sqlmodel import col

from mno.errors import NotFound
from mno.gitops.kinds.base import Kind

if TYPE_CHECKING:
    from sqlmodel import Session

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,98}[a-z0-9])?$")


class KeyedKind(Kind):
    prefix: ClassVar[str]

    def check_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid name {name!r} (a-z, 0-9, '.', '_' and '-')")

    def names(self, session: Session) -> dict[str, str]:
        """target id → document name, from the ownership rows."""
        from mno.store.models.gitops import GitopsResource

        rows = session.execute(
            sa.select(col(GitopsResource.target_id), col(GitopsResource.name)).where(
                col(GitopsResource.kind) == self.kind
            )
        )
        return {str(t): n for t, n in rows if t}

    def name_for(self, row_id: Any, names: dict[str, str]) -> str:
        return names.get(str(row_id)) or f"{self.prefix}-{str(row_id).replace('-', '')[:12]}"

    def id_of(self, session: Session, name: str, ids: list[Any]) -> str:
        """The id of the row named ``name`` among ``ids``."""
        names = self.names(session)
        for row_id in ids:
            if self.name_for(row_id, names) == name:
                return str(row_id)
        raise NotFound(f"{self.kind}/{name} not found")
