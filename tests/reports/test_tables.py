"""The reports' plain tables name real columns with the models' types."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import SQLModel

from mno.reports import tables
from mno.store.models import load_all
from mno.tenancy.tenants import SYSTEM_KEY


def test_every_column_matches_the_model() -> None:
    load_all()
    assert tables.metadata.tables
    for name, light in tables.metadata.tables.items():
        model = SQLModel.metadata.tables[name]
        for col in light.columns:
            real = model.columns[col.name].type
            same = type(col.type) is type(real)
            text = type(col.type) is sa.String and real._type_affinity is sa.String
            assert same or text, f"{name}.{col.name}: {col.type!r} is not {real!r}"
    assert tables.SYSTEM_KEY == SYSTEM_KEY
