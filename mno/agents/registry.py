"""Which agents exist, and which HTTP routers the agents' listener mounts.

Modules are imported only when an agent runs, so ``mno --help`` stays fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from mno.errors import BadInput

# agent name -> module with tick(ctx) -> TickResult
AGENTS: dict[str, str] = {
    "housekeeper": "mno.agents.housekeeper",
    "probe": "mno.agents.probe",
    "poller": "mno.agents.poller",
    "dispatcher": "mno.agents.dispatcher",
    "biller": "mno.agents.biller",
    "provisioner": "mno.agents.provisioner",
    "backup": "mno.agents.backup",
    "edge": "mno.agents.edge",
}

# "module:attribute" of fastapi.APIRouter objects mounted on the agents' HTTP listener
HTTP_ROUTERS: list[str] = [
    "mno.api.routes:router",
    "mno.agents.callbacks_http:router",
]


def load(name: str) -> ModuleType:
    if name not in AGENTS:
        raise BadInput(f"unknown agent {name!r}", f"one of: {', '.join(sorted(AGENTS))}")
    return importlib.import_module(AGENTS[name])
