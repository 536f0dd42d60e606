"""SQLModel tables, one module per domain.

Modules load on first use, so a command pays only for the tables it touches (every model
module imports the modules its foreign keys point at). ``load_all()`` registers every table:
migrations, the housekeeper, reflection-style lookups and tests need the whole schema.
Names stay importable from here (``from mno.store.models import Tenant``); that loads all.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

_loaded = False


def load_all() -> None:
    """Import every model module so ``SQLModel.metadata`` holds the whole schema."""
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def __getattr__(name: str) -> Any:
    load_all()
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
