"""Nex capacity signals: one row per condition the capacity checks follow, so that each
event is emitted once per transition and not on every pass (``mno.nex.capacity``).

``name`` is ``exhausted`` (instances wait in ``pending_capacity``), ``low:<host>`` or
``low:<host>/<node>`` (headroom under the platform's thresholds) or ``scale_out`` (the
last run of the scale-out command: ``since`` is when it started, ``detail`` its outcome).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class CapacitySignal(Base, table=True):
    __tablename__ = "nex_capacity_signal"

    name: str = Field(max_length=200, unique=True, index=True)
    active: bool = Field(default=False)
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
