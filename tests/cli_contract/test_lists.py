"""The list contract: ``--limit`` (default 100), ``--after CURSOR`` and ``--all``.

A page is ordered on a unique key and continues after a cursor (keyset), so paging visits
every row exactly once; the hint naming the next cursor goes to stderr and only when more
rows exist; ``--all`` streams every row, as one valid JSON array with ``-o json``.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from sqlmodel import col, select

from mno.cli import output
from mno.store import paging
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

HINT = re.compile(r"^… more results: (.+) --after (\S+) \(or --all\)$")
KEYS = [f"t-{n:03d}" for n in range(250)]


def _fill(opener: Callable[..., AbstractContextManager[Any]]) -> None:
    with opener() as s:
        tenants.create_many(s, [{"key": k} for k in reversed(KEYS)])


def test_paging_helper_visits_each_row_once(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    """On (created_at, id): bulk-created rows share a time, so the id breaks the ties and
    the cursor carries a time and a UUID."""
    _fill(session)
    order = [col(Tenant.created_at), col(Tenant.id)]
    stmt = select(Tenant.id, Tenant.key, Tenant.created_at).where(Tenant.key != "system")
    seen: list[str] = []
    cursors: list[str] = []
    after: str | None = None
    with session(write=False) as s:
        while True:
            rows, after = paging.page(s, stmt, order, after, 100)
            seen += [r.key for r in rows]
            if after is None:
                break
            cursors.append(after)
        streamed = [r.key for rows in paging.stream(s, stmt, order, chunk=100) for r in rows]
        ordered = [r.key for r in s.execute(stmt.order_by(*order))]
    assert len(cursors) == 2 and all(c.startswith("%") for c in cursors)
    assert all(shlex.quote(c) == c for c in cursors)  # copied from the hint as it is
    assert sorted(seen) == KEYS and len(set(seen)) == 250
    assert seen == ordered == streamed


def test_paging_entities_newest_first(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    """A select of an entity gives instances; ``descending`` walks (created_at, id) back."""
    _fill(session)
    order = [col(Tenant.created_at), col(Tenant.id)]
    stmt = select(Tenant).where(Tenant.key != "system")
    seen: list[Tenant] = []
    after: str | None = None
    with session(write=False) as s:
        while True:
            page = paging.page_of(s, stmt, order, after, 100, descending=True)
            assert all(isinstance(t, Tenant) for t in page.rows)
            seen += page.rows
            if page.next is None:
                break
            after = page.next
        streamed = [t.key for t in paging.each(s, stmt, order, descending=True)]
        keys = [t.key for t in seen]
    assert sorted(keys) == KEYS and len(set(keys)) == 250
    assert [(t.created_at, t.id) for t in seen] == sorted(
        ((t.created_at, t.id) for t in seen), reverse=True
    )
    assert streamed == keys


def test_tenant_pages_by_key_on_both_stores(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    _fill(session)
    seen: list[str] = []
    after: str | None = None
    with session(write=False) as s:
        while True:
            page = tenants.page_tenants(s, after=after, limit=100)
            seen += [v.tenant.key for v in page.rows]
            if page.next is None:
                break
            assert page.next == seen[-1]  # a key is its own readable cursor
            after = page.next
        streamed = [v.tenant.key for v in tenants.stream_tenants(s, chunk=64)]
    assert seen == KEYS == streamed


def _page(cli: Any, *args: str) -> tuple[list[dict[str, Any]], str | None, Any]:
    result = cli("tenant", "list", *args, "-o", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)  # a plain array: the hint is not on stdout
    assert isinstance(rows, list) and "more results" not in result.stdout
    hints = [line for line in result.stderr.splitlines() if "more results" in line]
    assert len(hints) <= 1
    if not hints:
        return rows, None, result
    found = HINT.match(hints[0])
    assert found, hints[0]
    return rows, found.group(2), found.group(1)


def test_cli_pages_through_250_tenants_with_the_printed_cursor(cli: Any, sqlite_url: str) -> None:
    from mno.store.db import session_scope

    _fill(lambda write=True: session_scope(sqlite_url, write=write))
    seen: list[str] = []
    args = ["--limit", "100"]
    pages = 0
    while True:
        rows, cursor, command = _page(cli, *args)
        pages += 1
        assert len(rows) == (100 if pages < 3 else 50)
        seen += [r["key"] for r in rows]
        if cursor is None:
            break
        assert command.endswith("tenant list --limit 100 --output json")
        args = ["--limit", "100", "--after", cursor]
    assert pages == 3
    assert seen == KEYS  # each row exactly once, in key order


def test_hint_only_when_more_rows_exist(cli: Any, sqlite_url: str) -> None:
    from mno.store.db import session_scope

    _fill(lambda write=True: session_scope(sqlite_url, write=write))
    rows, cursor, _ = _page(cli, "--limit", "250")
    assert len(rows) == 250 and cursor is None
    rows, cursor, _ = _page(cli, "--limit", "249")
    assert len(rows) == 249 and cursor == "t-248"
    rows, cursor, _ = _page(cli)  # the default page: 100
    assert len(rows) == 100 and cursor == "t-099"
    table = cli("tenant", "list", "--status", "pending_provision", "--limit", "10")
    assert len(table.stdout.splitlines()) == 11 and "more results" not in table.stdout
    assert table.stderr.strip().endswith(
        "tenant list --status pending_provision --limit 10 --after t-009 (or --all)"
    )
    bad = cli("tenant", "list", "--after", "%not-a-cursor")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: ") and bad.stdout == ""
    assert cli("tenant", "list", "--limit", "0").exit_code == 2


def test_all_streams_every_row(cli: Any, sqlite_url: str) -> None:
    from mno.store.db import session_scope

    _fill(lambda write=True: session_scope(sqlite_url, write=write))
    result = cli("tenant", "list", "--all", "-o", "json")
    assert result.exit_code == 0 and "more results" not in result.stderr
    assert [r["key"] for r in json.loads(result.stdout)] == KEYS
    after = json.loads(cli("tenant", "list", "--all", "--after", "t-199", "-o", "json").stdout)
    assert [r["key"] for r in after] == KEYS[200:]
    table = cli("tenant", "list", "--all", "--limit", "5").stdout.splitlines()
    assert table[0].startswith("KEY\t") and [line.split("\t")[0] for line in table[1:]] == KEYS
    yaml_rows = cli("tenant", "list", "--all", "-o", "yaml").stdout
    import yaml

    assert [r["key"] for r in yaml.safe_load(yaml_rows)] == KEYS


def test_render_stream_writes_batches_as_one_array(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    rows = ({"n": n, "name": f"r{n}"} for n in range(2500))  # three batches
    output.render_stream(rows, "json")
    assert json.loads(out.getvalue()) == [{"n": n, "name": f"r{n}"} for n in range(2500)]
    out.seek(0), out.truncate()
    output.render_stream(iter([]), "json")
    assert json.loads(out.getvalue()) == []
    out.seek(0), out.truncate()
    output.render_stream(({"n": n} for n in range(1500)), "table", columns=["n"])
    assert out.getvalue().splitlines() == ["N", *(str(n) for n in range(1500))]


def test_streamed_json_bytes_are_the_compact_form_of_the_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Off a terminal ``--all -o json`` is written as bytes (orjson): the text must be what
    the standard encoder writes for ``dumps_json``'s compact form, for every kind of value
    a list holds, including the ones only ``_json_default`` knows and one orjson refuses
    (an integer over 64 bits, written through the fallback)."""
    import enum
    import uuid
    from datetime import UTC, datetime
    from decimal import Decimal

    class Colour(enum.StrEnum):
        red = "red"

    rows = [
        {
            "text": 'é ü 中 "quoted" back\\slash \u2028 tab\t nl\n \x00 \x1f \x7f',
            "n": 3,
            "big": 2**70 if k == 1500 else k,
            "f": 0.1,
            "none": None,
            "flag": k % 2 == 0,
            "when": datetime(2026, 12, 7, 14, 3, 9, k, tzinfo=UTC),
            "id": uuid.UUID(int=k),
            "amount": Decimal("83.22"),
            "colour": Colour.red,
            "meta": {"nested": [1, {"a": None}], "1": "x"},
        }
        for k in range(2200)
    ]
    buf = io.BytesIO()
    out = io.TextIOWrapper(buf, encoding="utf-8")
    monkeypatch.setattr("sys.stdout", out)
    output.render_stream(iter(rows), "json")
    written = buf.getvalue().decode()
    expected = json.dumps(
        rows, ensure_ascii=False, separators=(",", ":"), default=output._json_default
    )
    assert written == expected + "\n"
    assert json.loads(written)[1500]["big"] == 2**70


def test_a_catalogue_list_pages_the_same_way(cli: Any, sqlite_url: str) -> None:
    """``notify template list`` reads built-in names: the same --limit/--after/--all."""
    everything = cli.json("notify", "template", "list", "--all")
    names = [r["name"] for r in everything]
    assert len(names) >= 3 and names == sorted(names)
    seen: list[str] = []
    args: list[str] = ["--limit", "2"]
    while True:
        result = cli("notify", "template", "list", *args, "-o", "json")
        seen += [r["name"] for r in json.loads(result.stdout)]
        found = HINT.match(result.stderr.strip()) if result.stderr.strip() else None
        if found is None:
            assert "more results" not in result.stderr
            break
        assert found.group(1).endswith("notify template list --limit 2 --output json")
        args = ["--limit", "2", "--after", found.group(2)]
    assert seen == names


def test_pages_carry_each_tenants_domains(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    items = [
        {"key": "d-1", "domains": ["one.example.com", "a.example.com"]},
        {"key": "d-2", "domains": ["two.example.com"]},
        {"key": "d-3"},
        {"key": "d-4", "domains": ["four.example.com"], "tier": "silo"},
    ]
    want = {
        "d-1": ["a.example.com", "one.example.com"],
        "d-2": ["two.example.com"],
        "d-3": [],
        "d-4": ["four.example.com"],
    }
    with session() as s:
        tenants.create_many(s, items)
    with session(write=False) as s:
        first = tenants.page_tenants(s, limit=3)
        second = tenants.page_tenants(s, limit=3, after=first.next)
        streamed = list(tenants.stream_tenants(s, chunk=2))
        pooled = list(tenants.stream_tenants(s, tier="pooled", chunk=1))
    paged = {v.tenant.key: v.domains for v in [*first.rows, *second.rows]}
    assert paged == want == {v.tenant.key: v.domains for v in streamed}
    assert {v.tenant.key: v.domains for v in pooled} == {k: want[k] for k in ("d-1", "d-2", "d-3")}


def test_audit_pages_newest_first_with_the_printed_cursor(cli: Any, sqlite_url: str) -> None:
    assert cli("quickstart").exit_code == 0
    everything = cli.json("audit", "list", "--all")
    assert len(everything) >= 5
    stamps = [e["at"] for e in everything]
    assert stamps == sorted(stamps, reverse=True)
    seen: list[str] = []
    args = ["--limit", "2"]
    while True:
        result = cli("audit", "list", *args, "-o", "json")
        seen += [e["id"] for e in json.loads(result.stdout)]
        found = HINT.match(result.stderr.strip()) if "more results" in result.stderr else None
        if found is None:
            break
        args = ["--limit", "2", "--after", found.group(2)]
    assert seen == [e["id"] for e in everything]


def test_streamed_dicts_are_the_views_as_dicts(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    """``--all`` reads raw columns: every value equals the typed view's, on both stores
    (ids, times with and without microseconds, metadata, flags, parents, domains)."""
    from datetime import UTC, datetime

    from mno import clock

    clock.set_now(datetime(2026, 3, 1, 9, 30, tzinfo=UTC))  # zero microseconds
    with session() as s:
        tenants.create_many(
            s,
            [
                {"key": "p-1", "domains": ["b.example.com", "a.example.com"]},
                {"key": "p-2", "parent": "p-1", "metadata": {"plan": "gold", "n": "1"}},
            ],
        )
    clock.set_now(datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC))
    with session() as s:
        tenants.create_many(s, [{"key": f"q-{n}", "country": "FR"} for n in range(5)])
        t = s.exec(select(Tenant).where(Tenant.key == "q-3")).one()
        t.in_arrears, t.status_reason, t.meta = True, "late ✓", {"nested": {"a": [1, None]}}
    clock.set_now(None)
    with session(write=False) as s:
        views = [v.as_dict() for v in tenants.stream_tenants(s, chunk=3)]
        plain = list(tenants.stream_tenant_dicts(s, chunk=3))
        after = list(tenants.stream_tenant_dicts(s, after="p-2", status="pending_provision"))
    assert plain == views and len(plain) == 7
    assert json.dumps(plain) == json.dumps(views)  # the same key order too
    assert plain[0]["created_at"] == "2026-03-01T09:30:00Z"
    assert plain[2]["created_at"] == "2026-03-01T09:30:00.123456Z"
    assert plain[0]["domains"] == ["a.example.com", "b.example.com"]
    assert plain[1]["parent"] == "p-1" and plain[1]["metadata"] == {"plan": "gold", "n": "1"}
    assert [v for v in plain if v["key"] == "q-3"][0]["in_arrears"] is True
    assert [v["key"] for v in after] == [f"q-{n}" for n in range(5)]
