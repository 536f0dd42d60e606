"""``agents.yaml``: which agents run, when, and with what batch, lease and options.

::

    agents:
      housekeeper:
        enabled: true
        interval: 1h          # or: cron: "*/5 * * * *" with timezone: Europe/Paris
        jitter: 30s
        batch_size: 1000
        concurrency: 1
        lease: 60s
        options: {}           # agent-specific

Errors name the file, line and dotted key, e.g.
``agents.yaml:12 dispatcher.interval: expected a duration like 10s``, and exit 2.
The models themselves live in ``mno.agent_settings``, so gitops validates with them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mno import safeyaml, settings
from mno.agent_settings import AgentConfig, AgentsFile
from mno.agents.registry import AGENTS
from mno.errors import BadInput

__all__ = ["AgentConfig", "AgentsFile", "default_config", "find", "load", "parse"]


def default_config() -> AgentsFile:
    """What runs with no file: every registered agent on its default schedule."""
    return AgentsFile(agents={name: AgentConfig(name=name) for name in AGENTS})


def find(path: Path | None = None) -> Path | None:
    """The agents file in force: ``path`` (``--file``), else the one settings name
    (``MNO_AGENTS_CONFIG``, the profile's ``agents_config``, ``$MNO_HOME/agents.yaml``)."""
    return path if path is not None else settings.agents_config_path()


def load(path: Path | None = None) -> AgentsFile:
    """Load and validate an agents file; errors name file:line and the dotted key. With
    no file anywhere every agent runs on its default schedule."""
    path = find(path)
    if path is None:
        return default_config()
    if not path.exists():
        raise BadInput(f"{path}: no such file")
    return parse(path.read_text(), path.name)


def parse(text: str, source: str = "agents.yaml") -> AgentsFile:
    """Validate the text of an agents file; ``source`` names it in errors."""
    data, marks = _compose(text, source)
    prefix: tuple[Any, ...] = ()
    if isinstance(data, dict) and data.get("kind") == "AgentsConfig":
        data = data.get("spec") or {}
        prefix = ("spec",)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput(f"{source}:1 expected a mapping with an 'agents' key")
    try:
        parsed = AgentsFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(p for p in error["loc"] if not str(p).startswith("function-after"))
        line = _line_for(marks, prefix, loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        raise BadInput(f"{source}:{line} {_dotted(loc)}: {message}") from exc
    for name, agent in parsed.agents.items():
        agent.name = name
    return parsed


def _dotted(path: tuple[Any, ...]) -> str:
    """``agents.dispatcher.interval`` is shown as ``dispatcher.interval``."""
    parts = path[1:] if path[:1] in (("agents",), ("spec",)) else path
    parts = parts[1:] if path[:2] == ("spec", "agents") else parts
    return ".".join(str(p) for p in parts)


def _compose(text: str, source: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Load one YAML document and the line of every key and list item (by dotted path)."""
    try:
        node = safeyaml.compose(text, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise BadInput(f"{source}:{line} not valid YAML: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}:1 not valid YAML: {exc}") from exc
    if node is None:
        return None, {}
    marks: dict[tuple[Any, ...], int] = {}
    loader = yaml.SafeLoader("")

    def walk(n: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = loader.construct_object(key_node, deep=True)
                if key in out:
                    line = key_node.start_mark.line + 1
                    raise BadInput(f"{source}:{line} {_dotted((*path, key))}: duplicate key")
                marks[(*path, key)] = key_node.start_mark.line + 1
                out[key] = walk(value_node, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            items = []
            for i, item in enumerate(n.value):
                marks[(*path, i)] = item.start_mark.line + 1
                items.append(walk(item, (*path, i)))
            return items
        return loader.construct_object(n, deep=True)

    try:
        return walk(node, ()), marks
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise BadInput(f"{source}:{line} not valid YAML: {exc.problem or exc.context}") from exc
    finally:
        loader.dispose()


def _line_for(
    marks: dict[tuple[Any, ...], int], prefix: tuple[Any, ...], loc: tuple[Any, ...]
) -> int:
    path = (*prefix, *loc)
    while path:
        if path in marks:
            return marks[path]
        path = path[:-1]
    return 1
