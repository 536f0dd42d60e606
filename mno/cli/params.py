"""Shared parsing of option values (K=V pairs, comma lists, --since times) and the shared
options of mutations: ``--yes`` with ``confirm()``, ``--dry-run`` with ``write_session()``.

``mno.clock`` is imported by ``since()`` alone, and the store by ``write_session()`` alone,
so a command's help loads neither.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mno.errors import BadInput, MnoError
from mno.settings import parse_duration

if TYPE_CHECKING:
    from sqlmodel import Session

YesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do not ask for confirmation (required off a terminal)."),
]
WatchOpt = Annotated[
    bool, typer.Option("--watch", "-w", help="Show again every --interval until Ctrl-C.")
]
IntervalOpt = Annotated[
    str, typer.Option("--interval", help="Time between renders with --watch (2s, 1m).")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; write nothing.")
]


def stdin_is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def confirm(action: str, yes: bool) -> None:
    """Ask before a destructive ``action`` ("offboard tenant acme").

    ``--yes`` skips the question. On a terminal the operator answers ``[y/N]`` (no: exit 1,
    nothing done); off a terminal the command refuses without ``--yes`` (exit 2), so a
    script never destroys anything by accident. Call it before opening a session.
    """
    if yes:
        return
    if not stdin_is_tty():
        raise BadInput(f"{action}: not confirmed", "pass --yes to confirm off a terminal")
    if not typer.confirm(f"{action[:1].upper()}{action[1:]}?", default=False, err=True):
        raise MnoError(f"{action}: not confirmed, nothing was changed")


@contextmanager
def write_session(dry_run: bool = False) -> Iterator[Session]:
    """A write transaction; with ``dry_run`` the domain function runs in it as usual and
    everything it wrote is rolled back at the end, so the result shows what would change."""
    from mno.store.db import session_scope

    with session_scope() as s:
        yield s
        if dry_run:
            s.rollback()


def pairs(values: list[str] | None, what: str = "value") -> dict[str, str]:
    """``["A=1", "B=2"]`` → ``{"A": "1", "B": "2"}``."""
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"invalid {what} {item!r}", "expected K=V")
        result[key.strip()] = value
    return result


def csv_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def since(value: str | None) -> datetime | None:
    """``--since``: a duration back from now (``24h``, ``7d``) or an ISO 8601 time."""
    if not value:
        return None
    from mno import clock

    try:
        back = parse_duration(value)
    except BadInput as exc:
        if "out of range" in exc.message:
            raise
    else:
        try:
            return clock.now() - back
        except OverflowError as exc:
            raise BadInput(f"--since {value} reaches back before the year 1") from exc
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInput(f"invalid time {value!r}", "use 24h, 7d or an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def deprecated_out(out: Path | None, legacy: Path | None, flag: str) -> Path | None:
    """``--out FILE`` names the file a command writes; ``-o`` is the output format
    everywhere. A hidden ``flag`` (``-o`` or ``--to``) still names the file for old
    scripts, with a warning; given both, ``--out`` wins."""
    if legacy is None:
        return out
    from mno.cli.output import warn

    warn(f"{flag} FILE is deprecated, use --out FILE")
    return out if out is not None else legacy


def interval(value: str) -> float:
    """``--interval``: a positive duration (``2s``, ``500ms``, ``1m``)."""
    seconds = parse_duration(value).total_seconds()
    if seconds <= 0:
        raise BadInput(f"--interval {value}: must be more than 0s")
    return seconds


def render_or_watch(render_fn: Callable[[], None], watch: bool, every: str, fmt: str) -> None:
    """Render once, or with ``--watch`` again every ``--interval`` until Ctrl-C."""
    if not watch:
        render_fn()
        return
    from mno.cli import output

    output.watch(render_fn, interval(every), fmt)


# -- lists: the page size, the cursor and --all ------------------------------------------

LimitOpt = Annotated[
    int,
    typer.Option(
        "--limit",
        min=1,
        help="Show at most N rows (default 100); when more exist, a line on stderr gives "
        "the cursor of the rest.",
    ),
]
AfterOpt = Annotated[
    str | None,
    typer.Option(
        "--after",
        metavar="CURSOR",
        help="Start after this cursor (printed on stderr when more rows exist).",
    ),
]
AllOpt = Annotated[
    bool, typer.Option("--all", help="Every row, streamed as it is read (ignores --limit).")
]
