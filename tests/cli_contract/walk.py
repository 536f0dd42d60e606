"""The command tree of ``mno``, walked from the typer app (lazily loaded groups included),
and the classification the contract tests use."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    command: Any

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def options(self) -> set[str]:
        return {o for p in self.command.params for o in (*p.opts, *p.secondary_opts)}

    @property
    def help(self) -> str:
        return (self.command.help or "").strip()

    def required(self) -> list[Any]:
        return [p for p in self.command.params if p.required]

    def output_is_format(self) -> bool:
        """``-o``/``--output`` chooses table, json or yaml (a file is ``--out``)."""
        return any(p.name == "output" and "--output" in p.opts for p in self.command.params)


def _walk(command: Any, path: tuple[str, ...], ctx: Any) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    if hasattr(command, "list_commands"):
        sub_ctx = ctx.__class__(command, parent=ctx, info_name=path[-1] if path else "mno")
        for name in command.list_commands(sub_ctx):
            sub = command.get_command(sub_ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, (*path, name), sub_ctx)


@cache
def everything() -> tuple[Command, ...]:
    """Every group and command, the root first."""
    import typer

    from mno.cli import app

    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="mno")
    return tuple(Command(path, cmd) for path, cmd in _walk(root, (), ctx))


def leaves() -> list[Command]:
    return [c for c in everything() if not hasattr(c.command, "list_commands")]


# A command is destructive when its name or the first line of its help says it deletes,
# removes, terminates, voids, replays, replaces data, offboards or cancels a subscription.
_DESTRUCTIVE_NAMES = {"delete", "remove", "terminate", "void", "replay", "offboard", "restore"}
_DESTRUCTIVE_HELP = re.compile(
    r"\b(delete|deletes|remove|removes|terminate|terminates|void|voids|replay|replays|"
    r"re-queue|replace the|offboard)\b",
    re.IGNORECASE,
)
# Destructive commands that confirm only with a flag that makes them destructive.
DESTRUCTIVE_WITH = {("secret", "init-master-key"): ["--force"]}
# Named by the CLI contract although neither rule above finds them.
_DESTRUCTIVE_EXTRA = {("subscription", "cancel")}
# Found by the rules above, and not destructive.
_NOT_DESTRUCTIVE = {
    # removes a tax exemption: the tenant is taxed normally again; reversible with `set`
    ("billing", "tax-treatment", "remove"),
}


def is_destructive(c: Command) -> bool:
    if c.path in _NOT_DESTRUCTIVE:
        return False
    first_line = c.help.splitlines()[0] if c.help else ""
    return (
        c.path[-1] in _DESTRUCTIVE_NAMES
        or c.path in _DESTRUCTIVE_EXTRA
        or c.path in DESTRUCTIVE_WITH
        or bool(_DESTRUCTIVE_HELP.search(first_line))
    )


def is_list(c: Command) -> bool:
    first_line = c.help.splitlines()[0] if c.help else ""
    return c.path[-1] == "list" or first_line.startswith("List ")


def dummy_args(c: Command) -> list[str]:
    """Values for the required arguments and options, enough to get past parsing."""
    args: list[str] = []
    for p in c.required():
        # a number where the parameter takes one (a line number), text otherwise
        value = "1" if p.bare_type() == "int" else "nothing-here"
        if p.param_type_name == "option":
            args += [p.opts[0], value]
        else:
            args.append(value)
    return args
