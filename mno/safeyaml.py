"""Reading YAML that may come from anyone: aliases within a budget.

YAML anchors and aliases let a tiny document describe a huge one: nine levels of nine
aliases each (the "billion laughs") are a few hundred bytes that expand to 9^9 values.
PyYAML shares the aliased objects, so loading is cheap, but anything that then walks the
data (validation, diffing, JSON encoding) does the whole expansion and runs out of memory
or time. Every place that reads YAML (GitOps documents, agents.yaml, platform.yaml, the
profile, billing catalogues, connector specs) goes through this module, which refuses a
document whose aliases would add more than ``MAX_ALIAS_NODES`` nodes, and any recursive
alias, with ``BadInput`` (exit 2) before the data is built.

Documents without anchors (no ``&`` in the text) skip the alias check. Every document is
also refused when it nests deeper than ``MAX_DEPTH`` collections (``[[[[…]]]]``): the
constructors and every later walk of the data recurse, and would hit Python's recursion
limit.
"""

from __future__ import annotations

from typing import Any

import yaml

from mno.errors import BadInput

MAX_ALIAS_NODES = 10_000
MAX_DEPTH = 100

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def loader_class() -> Any:
    """The fastest safe loader PyYAML has here (libyaml's when built with it)."""
    return _Loader


def expanded_size(node: yaml.Node) -> tuple[int, int]:
    """``(distinct, expanded)``: how many nodes the graph holds, and how many a walk that
    follows every alias visits. Raises ``ValueError`` on a recursive alias. Iterative, so
    deep nesting does not hit Python's recursion limit."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        key = id(current)
        if children_done:
            active.discard(key)
            total = 1
            for child in _children(current):
                total += sizes[id(child)]
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in active:
            raise ValueError("a recursive alias")
        active.add(key)
        stack.append((current, True))
        for child in _children(current):
            child_key = id(child)
            if child_key in active:
                raise ValueError("a recursive alias")
            if child_key not in sizes:
                stack.append((child, False))
    return len(sizes), sizes[id(node)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


HINT = "write the repeated parts out, or use fewer anchors"


def too_deep(node: yaml.Node) -> yaml.Node | None:
    """The first node nested deeper than ``MAX_DEPTH`` collections, or None. A node met
    again through an alias is walked again only when met deeper than before, so a
    recursive alias or a wide fan of aliases costs no more than the nesting."""
    stack: list[tuple[yaml.Node, int]] = [(node, 1)]
    deepest: dict[int, int] = {}
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            return current
        if deepest.get(id(current), 0) >= depth:
            continue
        deepest[id(current)] = depth
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in current.value)
    return None


def check_depth(node: yaml.Node | None, source: str) -> None:
    """Refuse (``BadInput``) a composed document nested deeper than ``MAX_DEPTH``."""
    if node is None:
        return
    deep = too_deep(node)
    if deep is not None:
        raise BadInput(
            f"{source}:{deep.start_mark.line + 1}: YAML nested deeper than {MAX_DEPTH} levels",
            "flatten the document",
        )


def alias_refusal(node: yaml.Node) -> str | None:
    """Why a composed document is refused (its aliases expand past the budget, or one
    is recursive), or None when it is accepted."""
    try:
        distinct, expanded = expanded_size(node)
    except ValueError as exc:
        return f"YAML with {exc} is not accepted"
    if expanded - distinct > MAX_ALIAS_NODES:
        return (
            f"YAML aliases expand to {expanded:,} values "
            f"(over {MAX_ALIAS_NODES:,} more than the document writes out)"
        )
    return None


def check_node(node: yaml.Node | None, source: str) -> None:
    """Refuse (``BadInput``) a composed document whose aliases expand past the budget."""
    if node is None:
        return
    refusal = alias_refusal(node)
    if refusal:
        raise BadInput(f"{source}:{node.start_mark.line + 1}: {refusal}", HINT)


def _nodes(text: str, source: str) -> list[yaml.Node]:
    loader = _Loader(text)
    try:
        nodes: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                if "&" in text:
                    check_node(node, source)
                check_depth(node, source)
                nodes.append(node)
        return nodes
    finally:
        loader.dispose()


def compose(text: str, source: str) -> yaml.Node | None:
    """The single document of ``text`` as a node graph, checked (``yaml.compose``)."""
    loader = _Loader(text)
    try:
        node: yaml.Node | None = loader.get_single_node()
    finally:
        loader.dispose()
    if node is not None and "&" in text:
        check_node(node, source)
    check_depth(node, source)
    return node


def construct(node: yaml.Node | None) -> Any:
    """Python data from a checked node graph."""
    if node is None:
        return None
    loader = _Loader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def safe_load(text: str, source: str) -> Any:
    """``yaml.safe_load`` with the alias budget; YAML errors propagate as ``yaml.YAMLError``
    for the caller to report with its own context."""
    return construct(compose(text, source))


def safe_load_all(text: str, source: str) -> list[Any]:
    """``yaml.safe_load_all`` with the alias budget (every document of the stream)."""
    return [construct(node) for node in _nodes(text, source)]
