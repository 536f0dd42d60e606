"""The one console: rendering of tables, JSON and YAML, messages and progress.

Commands never print directly; they call ``render()``, ``success()`` or ``progress()``.
JSON output has stable keys, ISO 8601 UTC timestamps and money as strings.

Tables are drawn for a terminal; when stdout is a pipe or a file they are plain
tab-separated lines (a header line, then one line per row), as gh and kubectl do, so
``cut``, ``awk`` and ``sort`` work on them. ``-o wide`` shows every field as a column;
``mno --no-headers`` leaves the header line out. Cells never carry terminal control
sequences from user data (escape sequences and control characters are shown escaped),
and timestamps are shown to the second in UTC. In list tables the UUIDs of ``id`` and
``…_id`` columns are shown by their first 8 hex digits (more when two ids shown share
them), as git shows a short hash; every command that takes an id takes that prefix too.
``-o wide``, JSON and YAML show them whole.

rich, PyYAML and the store's ``jsonable`` are imported when something is rendered: every
command module imports this one, and its ``--help`` renders nothing.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
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
_one_line_json = False  # --watch -o json: one document per line (NDJSON)


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
    if sys.stdout.isatty() and not _one_line_json:
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


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SHORT_ID = 8


def id_column(name: str) -> bool:
    """``id`` and ``…_id`` columns hold ids, shown short in tables."""
    return name == "id" or name.endswith("_id")


def short_cell(column: str, value: Any, width: int = SHORT_ID) -> str:
    """A list table's cell: in an id column a UUID shows its first ``width`` characters
    (8 hex digits at least), as git shows a short hash; every command that takes the id
    takes the short form too."""
    if id_column(column) and isinstance(value, str) and _UUID.match(value):
        return value[:width]
    return cell(value)


def short_widths(rows: Sequence[Any], columns: Sequence[str]) -> dict[str, int]:
    """Per id column, how much of each UUID the table shows: 8 characters, or more when
    two different ids of the column share their first 8 (time-ordered ids made in the
    same second do), until every id shown is told apart."""
    widths: dict[str, int] = {}
    for column in columns:
        if not id_column(column):
            continue
        ids = {v for row in rows if isinstance(v := row.get(column), str) and _UUID.match(v)}
        width = SHORT_ID
        while width < 36 and len({v[:width] for v in ids}) < len(ids):
            width += 1
        if width < 36 and any(v[width - 1] == "-" for v in ids):
            width += 1  # never end on a dash
        widths[column] = width
    return widths


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
    short = fmt is Format.table
    if not sys.stdout.isatty():
        _render_plain(payload, columns, empty, short, title)
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
        widths = short_widths(payload, cols) if short else {}
        for row in payload:
            table.add_row(*(Text(_cell_in(widths, col, row.get(col))) for col in cols))
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


def _cell_in(widths: dict[str, int], column: str, value: Any) -> str:
    """A list table's cell; ``widths`` (from ``short_widths``) shortens id columns."""
    width = widths.get(column)
    return cell(value) if width is None else short_cell(column, value, width)


def _render_plain(
    payload: Any,
    columns: Sequence[str] | None,
    empty: str,
    short: bool = False,
    title: str | None = None,
) -> None:
    """Tab-separated lines for pipes and files: no box drawing, no colour, no wrapping.
    A table's title goes to stderr, so stdout holds only rows."""
    out = sys.stdout
    if title:
        err_console().print(f"{title}:", highlight=False)
    if isinstance(payload, list):
        if not payload:
            err_console().print(empty, highlight=False)
            return
        cols = _columns(payload, columns)
        if not _no_headers:
            out.write(_tsv([c.upper().replace("_", " ") for c in cols]) + "\n")
        widths = short_widths(payload, cols) if short else {}
        for row in payload:
            out.write(_tsv([_cell_in(widths, c, row.get(c)) for c in cols]) + "\n")
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


def watch(render_fn: Callable[[], None], interval: float, fmt: Format | str) -> None:
    """``--watch``: call ``render_fn`` now and every ``interval`` seconds until Ctrl-C,
    which ends the command with exit 0.

    On a terminal the screen is cleared before each table; off a terminal each render
    follows the previous one after a blank line (``---`` between YAML documents). With
    ``-o json`` every render is one JSON document on one line (NDJSON).
    ``MNO_WATCH_COUNT=N`` stops after N renders.
    """
    import time

    from mno import settings

    global _one_line_json
    fmt = Format(fmt)
    limit = int(os.environ.get(settings.ENV_WATCH_COUNT) or 0)
    clear = fmt in (Format.table, Format.wide) and sys.stdout.isatty()
    renders = 0
    _one_line_json = True
    try:
        while True:
            if clear:
                console().clear()
            elif renders and fmt is Format.yaml:
                sys.stdout.write("---\n")
            elif renders and fmt is not Format.json:
                sys.stdout.write("\n")
            render_fn()
            sys.stdout.flush()
            renders += 1
            if limit and renders >= limit:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return
    finally:
        _one_line_json = False


# -- lists: one page with a hint for the rest, or every row streamed -------------------------

_BATCH = 1000


def _batches(rows: Iterable[Any], size: int = _BATCH) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def render_stream(
    rows: Iterable[Any],
    fmt: Format | str = Format.table,
    *,
    columns: Sequence[str] | None = None,
    empty: str = "Nothing to show.",
) -> None:
    """Write rows as they come, a batch at a time, in constant memory: a JSON array built
    incrementally (``[``, rows separated by ``,``, ``]``), a YAML sequence, or table lines
    (tab-separated off a terminal; on a terminal a table per batch, one header)."""
    fmt = Format(fmt)
    out = sys.stdout
    if fmt is Format.json:
        if not out.isatty() and hasattr(out, "buffer"):
            _json_stream_bytes(rows, out)
            return
        out.write("[")
        first = True
        for batch in _batches(rows):
            items = [_json_default(r) if hasattr(r, "as_dict") else r for r in batch]
            text = json.dumps(items, indent=2, ensure_ascii=False, default=_json_default)
            out.write(("" if first else ",") + text[1:-1])
            first = False
        out.write("]\n")
        return
    if fmt is Format.yaml:
        import yaml

        wrote = False
        for batch in _batches(rows):
            out.write(yaml.safe_dump(to_jsonable(batch), sort_keys=False, allow_unicode=True))
            wrote = True
        if not wrote:
            out.write("[]\n")
        return
    if fmt is Format.wide:
        columns = None
    cols: list[str] | None = None
    for batch in _batches(rows):
        payload = to_jsonable(batch)
        if not out.isatty():
            if cols is None:
                cols = _columns(payload, columns)
                if not _no_headers:
                    out.write(_tsv([c.upper().replace("_", " ") for c in cols]) + "\n")
            for row in payload:
                out.write(_tsv([cell(row.get(c)) for c in cols]) + "\n")
            out.flush()
            continue
        from rich.table import Table
        from rich.text import Text

        show_header = cols is None and not _no_headers
        cols = cols or _columns(payload, columns)
        table = Table(show_edge=False, header_style="bold", show_header=show_header)
        for col in cols:
            table.add_column(col.upper().replace("_", " "), overflow="fold")
        for row in payload:
            table.add_row(*(Text(cell(row.get(col))) for col in cols))
        console().print(table)
    if cols is None:
        err_console().print(empty, highlight=False)


def _compact_json(items: list[Any]) -> bytes:
    """``dumps_json``'s compact form as UTF-8 bytes, written by orjson: the same text for
    the strings, numbers, lists and mappings a list holds (times, UUIDs, Decimals and
    enums go through ``_json_default`` as they do for the standard encoder). A value orjson
    cannot write (an integer over 64 bits, a non-finite float) falls back to ``json``."""
    import orjson

    try:
        return orjson.dumps(
            items,
            default=_json_default,
            option=orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_SUBCLASS
            | orjson.OPT_PASSTHROUGH_DATACLASS
            | orjson.OPT_NON_STR_KEYS,
        )
    except TypeError:
        text = json.dumps(items, ensure_ascii=False, separators=(",", ":"), default=_json_default)
        return text.encode()


def _json_stream_bytes(rows: Iterable[Any], out: Any) -> None:
    """The compact JSON array of ``render_stream`` written to ``out``'s byte buffer a
    batch at a time (no text-layer encoding of long strings)."""
    out.flush()
    buf = out.buffer
    buf.write(b"[")
    first = True
    for batch in _batches(rows):
        items = [_json_default(r) if hasattr(r, "as_dict") else r for r in batch]
        data = _compact_json(items)
        if not first:
            buf.write(b",")
        buf.write(data[1:-1])
        first = False
    buf.write(b"]\n")
    buf.flush()


def more_hint(cursor: str) -> None:
    """One line on stderr: the command that shows the rest (never on stdout)."""
    import shlex

    # typer carries its own copy of click: its context, not the click package's
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context

    ctx = get_current_context(silent=True)
    words: list[str] = []
    if ctx is not None:
        words.append(ctx.command_path)
        for p in ctx.command.params:
            if p.name in (None, "after", "all") or p.expose_value is False:
                continue
            value = ctx.params.get(p.name)
            if p.param_type_name == "argument":
                values = value if isinstance(value, list | tuple) else [value]
                words += [shlex.quote(str(v)) for v in values if v is not None]
                continue
            source = ctx.get_parameter_source(p.name)
            if source not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
                continue
            opt = p.opts[-1] if p.opts[-1].startswith("--") else p.opts[0]
            if getattr(p, "is_flag", False):
                words.append(opt if value else (p.secondary_opts or [opt])[0])
                continue
            for v in value if isinstance(value, list | tuple) else [value]:
                if v is not None:
                    words += [opt, shlex.quote(str(getattr(v, "value", v)))]
    else:
        words.append("mno")
    command = " ".join(words)
    sys.stderr.write(f"… more results: {command} --after {shlex.quote(cursor)} (or --all)\n")


def render_page(
    rows: Any,
    next_cursor: str | None,
    fmt: Format | str = Format.table,
    *,
    columns: Sequence[str] | None = None,
    empty: str = "Nothing to show.",
) -> None:
    """One page of a list; when more rows exist, the hint with their cursor on stderr."""
    render(list(rows), fmt, columns=columns, empty=empty)
    if next_cursor is not None:
        more_hint(next_cursor)


def render_list(
    rows: Sequence[Any],
    key: str | tuple[str, ...],
    fmt: Format | str,
    *,
    limit: int,
    after: str | None,
    all_: bool,
    columns: Sequence[str] | None = None,
    empty: str = "Nothing to show.",
) -> None:
    """The list contract over a short list read whole (a catalogue): ordered by the
    unique field ``key`` (or fields), one page after ``after``, or every row with ``all_``."""
    from mno.store.paging import field, page_list

    names = (key,) if isinstance(key, str) else key
    page = page_list(rows, field(*names), after, None if all_ else limit)
    if all_:
        render_stream(page.rows, fmt, columns=columns, empty=empty)
    else:
        render_page(page.rows, page.next, fmt, columns=columns, empty=empty)
