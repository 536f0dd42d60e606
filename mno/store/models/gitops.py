"""GitOps ownership: one row per resource applied from documents.

A row names the resource (``kind``, ``name``, and ``target_id`` when the store row has no
natural key), the ``source`` whose inventory it belongs
to (prune deletes only what the same source applied), the document's labels and
annotations (``mno.io/protect`` lives there), and ``managed``: for every spec field the
documents set, the source that set it last and the value it set. A current value that
differs from the recorded one is drift; a field set last by another source is a conflict.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mno import clock
from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class GitopsResource(Base, table=True):
    __tablename__ = "gitops_resource"
    __table_args__ = (sa.UniqueConstraint("kind", "name", name="uq_gitops_resource"),)

    kind: str = Field(max_length=40, index=True)
    name: str = Field(max_length=200)
    source: str = Field(max_length=100, index=True)
    # the resource's id, for kinds whose store rows have no natural key (webhook endpoints)
    target_id: str | None = Field(default=None, max_length=64)
    labels: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    annotations: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    managed: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    applied_at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime)
