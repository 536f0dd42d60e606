"""Settings kinds kept in files: ``Platform`` (platform.yaml) and ``AgentsConfig``
(agents.yaml).

They are validated with the same typed models the platform and the agents load, and
never written to the store: the files are read where they are used.

``agents_kind()`` imports the agents' config module itself: an install without it simply
has no AgentsConfig kind.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mno.gitops.kinds.base import FileKind
from mno.platform import PlatformConfig


def _platform_model() -> type[BaseModel]:
    return PlatformConfig


class PlatformKind(FileKind):
    kind = "Platform"
    plural = "platform"
    spec_model = _platform_model()
    description = "Platform settings (Docker hosts, tiers, webhooks, retention); kept in a file."


def agents_kind() -> type[FileKind] | None:
    """The Agents kind when the agents' config model exists."""
    try:
        from mno import agent_settings as agents_config
    except ImportError:
        return None
    model: Any = None
    for name in ("AgentsFile", "AgentsConfig"):
        candidate = getattr(agents_config, name, None)
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            model = candidate
            break
    if model is None:
        return None

    class AgentsKind(FileKind):
        kind = "AgentsConfig"
        plural = "agents"
        spec_model = model
        description = "Agent daemon settings (schedules, batch sizes); kept in agents.yaml."

    return AgentsKind
