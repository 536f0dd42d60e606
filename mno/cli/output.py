"""The one console: rendering of tables, JSON and YAML, messages and progress.

Commands never print directly; they call ``render()``, ``success()`` or ``progress()``.
JSON output has stable keys, ISO 8601 UTC timestamps and money as strings.

Tables are drawn for a terminal; when stdout is a pipe or a file they are plain
tab-separated lines (a header line, then one line per row), as gh and kubectl do, so
``cut``, ``awk`` and ``sort`` work on them. ``-o wide`` shows every field as a column;
``mno --no-headers`` leaves the header line out. Cells never carry terminal control
sequences from user data (escape sequences and control characters are shown escaped),
and timestamps are shown to the second in UTC.

rich, PyYAML and the store's ``jsonable`` are imported when something is rendered: every
command module imports this one, and its ``--help`` renders nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console


class Format(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[
    Format,
    typer.Option(
        "--output",
        "-o",
        help="Output format: table, wide (every column), json or yaml.",
        case_sensitive=False,
    ),
]

_no_headers = False


def set_no_headers(value: bool) -> None:
    global _no_headers
    _no_headers = value


_console: Console | None = None
_err_console: Console | None = None


def console() -> Console:
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(no_color=bool(os.environ.get("NO_COLOR")) or None, soft_wrap=False)
    return _console


def err_console() -> Console:
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, no_color=bool(os.environ.get("NO_COLOR")) or None)
    return _err_console


def reset() -> None:
    """Forget the consoles (tests swap stdout between invocations)."""
    global _console, _err_console
    _console = None
    _err_console = None


def to_jsonable(data: Any) -> Any:
    """One pass over the data: objects with ``as_dict``/``model_dump`` become dicts, and
    UUIDs, datetimes and Decimals become strings (ISO 8601 UTC for times)."""
    from mno.store.audit import jsonable

    if hasattr(data, "as_dict"):
        data = data.as_dict()
    elif hasattr(data, "model_dump"):
        data = data.model_dump()
    if isinstance(data, dict):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [to_jsonable(item) for item in data]
    if data is None or isinstance(data, str | int | float | bool):
        return data
    return jsonable(data)


def _json_default(value: Any) -> Any:
    from mno.store.audit import jsonable

    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    result = jsonable(value)
    if result is value:
        raise TypeError(f"cannot render {type(value).__name__} as JSON")
    return result


def dumps_json(data: Any) -> str:
    """Indented on a terminal; compact (and much faster for long lists) in pipes.

    Only the top level is converted here; the JSON encoder calls ``_json_default`` for the
    few values it cannot write itself (UUIDs, datetimes, Decimals), so nothing is walked
    twice.
    """
    if isinstance(data, list):
        data = [_json_default(item) if hasattr(item, "as_dict") else item for item in data]
    if sys.stdout.isatty():
        return json.dumps(data, indent=2, ensure_ascii=False, default=_json_default)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_json_default)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(?:Z|[+-]00:00)$")


def _safe(text: str) -> str:
    """``text`` without terminal control: ESC, other C0/C1 controls and DEL are shown as
    escapes (``\x1b``), so user data cannot move the cursor, recolour or retitle."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def cell(value: Any) -> str:
    """A value as a table cell shows it."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        stamp = _ISO.match(value)
        if stamp:
            return f"{stamp.group(1)} {stamp.group(2)}"
        return _safe(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        if set(value) == {"amount", "currency"}:
            return f"{value['amount']} {value['currency']}"
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) if value else "-"
    return str(value)


def render(
    data: Any,
    fmt: Format | str = Format.table,
    *,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    empty: str = "Nothing to show.",
) -> None:
    """Print one object (a dict) or a list of objects in the chosen format."""
    fmt = Format(fmt)
    if fmt is Format.json:
        sys.stdout.write(dumps_json(data) + "\n")
        return
    payload = to_jsonable(data)
    if fmt is Format.yaml:
        import yaml

        sys.stdout.write(yaml.safe_dump(payload, sort_keys=False, allow_unicode=True))
        return
    if fmt is Format.wide:
        columns = None
    if not sys.stdout.isatty():
        _render_plain(payload, columns, empty)
        return
    from rich.table import Table
    from rich.text import Text

    if isinstance(payload, list):
        if not payload:
            console().print(empty)
            return
        cols = _columns(payload, columns)
        table = Table(
            title=title, show_edge=False, header_style="bold", show_header=not _no_headers
        )
        for col in cols:
            table.add_column(col.upper().replace("_", " "), overflow="fold")
        for row in payload:
            table.add_row(*(Text(cell(row.get(col))) for col in cols))
        console().print(table)
        return
    if isinstance(payload, dict):
        table = Table(title=title, show_header=False, show_edge=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key in columns or payload.keys():
            table.add_row(Text(_safe(key)), Text(cell(payload.get(key))))
        console().print(table)
        return
    console().print(Text(cell(payload)))


def _columns(rows: list[Any], columns: Sequence[str] | None) -> list[str]:
    if columns:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows[:100]:
        seen.update(dict.fromkeys(row))
    return list(seen)


def _tsv(values: Sequence[str]) -> str:
    return "\t".join(v.replace("\t", " ").replace("\n", " ").replace("\r", " ") for v in values)


def _render_plain(payload: Any, columns: Sequence[str] | None, empty: str) -> None:
    """Tab-separated lines for pipes and files: no box drawing, no colour, no wrapping."""
    out = sys.stdout
    if isinstance(payload, list):
        if not payload:
            err_console().print(empty, highlight=False)
            return
        cols = _columns(payload, columns)
        if not _no_headers:
            out.write(_tsv([c.upper().replace("_", " ") for c in cols]) + "\n")
        for row in payload:
            out.write(_tsv([cell(row.get(c)) for c in cols]) + "\n")
        return
    if isinstance(payload, dict):
        for key in columns or payload.keys():
            out.write(_tsv([_safe(str(key)), cell(payload.get(key))]) + "\n")
        return
    out.write(cell(payload) + "\n")


def success(message: str) -> None:
    """A short confirmation on stderr, so stdout stays clean for data."""
    err_console().print(f"[green]✓[/green] {message}", highlight=False)


def done(data: dict[str, Any], message: str, fmt: Format) -> None:
    """Confirm an action: a line on stderr for tables, the result object in json/yaml."""
    if fmt in (Format.table, Format.wide):
        success(message)
    else:
        render(data, fmt)


def info(message: str) -> None:
    err_console().print(message, highlight=False)


def warn(message: str) -> None:
    err_console().print(f"[yellow]Warning:[/yellow] {message}", highlight=False)


def error(message: str) -> None:
    err_console().print(f"[red]Error:[/red] {message}", highlight=False, soft_wrap=True)


def is_tty() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Any]:
    """A progress bar on a TTY; elsewhere a no-op advancer. Yields ``advance(n)``."""
    if not is_tty():
        yield lambda n=1: None
        return
    from rich.progress import Progress

    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


@contextmanager
def counter(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar with counts and a rate on a TTY; elsewhere a no-op. Yields the
    ``on_progress(done, total)`` callback domain functions take (``total`` None: unknown)."""
    if not is_tty():

        def ignore(done: int, total: int | None = None) -> None:
            return None

        yield ignore
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate())
    with Progress(*columns, TimeElapsedColumn(), console=err_console(), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None = None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def spinner(description: str) -> Iterator[None]:
    if not is_tty():
        yield
        return
    with err_console().status(description):
        yield
