"""Child streams: invoice lines listed per invoice (the parent's id in the path and on
the child), all parents on a full pass, only the changed ones on an incremental pass, up
to the connector's concurrency at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.sync.apps import Books, books_app, serve


def books_yaml(url: str, concurrency: int = 1) -> str:
    return f"""name: books
app: books
base_url: {url}
concurrency: {concurrency}
entities:
  - canonical: line
    parent:
      entity: invoice
      path: /invoices/{{id}}/lines
      key: invoice_id
    list:
      path: /unused
    records: lines
    mapping:
      sku: sku
      qty: qty
  - canonical: invoice
    list:
      path: /invoices
    records: data
    updated_at: updated_at
    incremental:
      param: updated_since
      lookback: 0s
    mapping:
      total: total
"""


def apply(world: Any, text: str) -> None:
    from mno.store.db import session_scope
    from mno.sync import spec

    path: Path = world.tmp / "connector.yaml"
    path.write_text(text)
    with session_scope(world.url) as s:
        spec.apply(s, spec.load_file(path), str(path))


def lines(world: Any) -> dict[str, str]:
    """sku → invoice id of the pulled lines."""
    return {r.data["sku"]: r.data["invoice_id"] for r in world.records() if r.entity == "line"}


def test_lines_per_invoice_full_then_only_changed_parents(world: Any) -> None:
    books = Books()
    for i in range(1, 5):
        books.add_invoice(f"inv{i}", lines=i)
    with serve(books_app(books)) as url:
        apply(world, books_yaml(url))
        name = world.connect("books", push=False)
        run = world.run(name)
        assert run.status == "success", run.error
        got = lines(world)
        assert len(got) == 1 + 2 + 3 + 4
        assert got["sku-inv3-l2"] == "inv3"
        assert sorted(books.line_calls) == ["inv1", "inv2", "inv3", "inv4"]
        # a line added to inv2 (the invoice is stamped) and one to inv1 without its
        # invoice changing: an incremental pass lists the lines of the invoices it
        # lists only, inv2 and inv4 (the newest, listed again: "since" is inclusive)
        books.add_line("inv2")
        books.lines["inv1"].append({"id": "inv1-l9", "sku": "sku-inv1-l9", "qty": 2})
        books.line_calls.clear()
        run = world.run(name)
        assert run.status == "success", run.error
        assert sorted(books.line_calls) == ["inv2", "inv4"]
        got = lines(world)
        assert got["sku-inv2-l3"] == "inv2" and "sku-inv1-l9" not in got
        # a full pass lists every invoice's lines, and sweeps a line that went away
        books.lines["inv3"].pop()
        books.line_calls.clear()
        run = world.run(name, full=True)
        assert run.status == "success", run.error
        assert sorted(books.line_calls) == ["inv1", "inv2", "inv3", "inv4"]
        got = lines(world)
        assert "sku-inv1-l9" in got and "sku-inv3-l3" not in got
        assert len(got) == 2 + 3 + 2 + 4
        assert run.counts["deleted"] == 1


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_bounds_parallel_child_requests(world: Any, concurrency: int) -> None:
    books = Books(delay=0.15)
    for i in range(1, 9):
        books.add_invoice(f"inv{i}", lines=2)
    with serve(books_app(books)) as url:
        apply(world, books_yaml(url, concurrency=concurrency))
        run = world.run(world.connect("books", push=False))
    assert run.status == "success", run.error
    assert len(lines(world)) == 16
    assert books.max_in_flight == concurrency


def test_parent_spec_errors() -> None:
    from mno.errors import BadInput
    from mno.sync import spec

    text = books_yaml("http://h")
    with pytest.raises(BadInput, match="parent order is no other entity"):
        spec.parse(text.replace("entity: invoice", "entity: order"))
    with pytest.raises(BadInput, match="must contain"):
        spec.parse(text.replace("/invoices/{id}/lines", "/invoices/lines"))
