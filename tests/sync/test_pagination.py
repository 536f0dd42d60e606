"""Pagination styles against real servers on loopback: a total in X-Total-Count, a next
URL in the body, a Link header from the first (parameterless) response on, static list
params; and a full pass over a shifting offset listing that must not delete what it
merely missed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.sync.api import Api, connector_yaml
from tests.sync.apps import Listing, items, listing_app, serve


def apply(world: Any, text: str) -> None:
    from mno.store.db import session_scope
    from mno.sync import spec

    path: Path = world.tmp / "connector.yaml"
    path.write_text(text)
    with session_scope(world.url) as s:
        spec.apply(s, spec.load_file(path), str(path))


def shop_yaml(url: str, path: str, pagination: str, records: str = "", params: str = "") -> str:
    return f"""name: shop
app: shop
base_url: {url}
entities:
  - canonical: item
    list:
      path: {path}{params}
    records: "{records}"
    pagination:
{pagination}
    mapping:
      name: name
      status: status
"""


def pulled(world: Any) -> set[str]:
    return {r.data["name"] for r in world.records()}


def test_total_header_stops_without_asking_past_the_end(world: Any) -> None:
    listing = Listing(items(20))
    pag = """      type: page
      param: page
      size_param: per_page
      size: 5
      stop: total
      total_header: X-Total-Count"""
    with serve(listing_app(listing)) as url:
        apply(world, shop_yaml(url, "/total/items", pag))
        run = world.run(world.connect("shop", push=False))
    assert run.status == "success", run.error
    assert len(world.records()) == 20
    # four full pages; a fifth request would have been refused with 400
    assert [c["page"] for c in listing.calls] == ["1", "2", "3", "4"]


def test_next_url_in_body_relative_and_absolute_with_static_params(world: Any) -> None:
    listing = Listing(items(30))
    pag = """      type: next_url
      next_url_path: links.next"""
    params = "\n      params:\n        status: active"
    with serve(listing_app(listing)) as url:
        apply(world, shop_yaml(url, "/next/items", pag, records="items", params=params))
        run = world.run(world.connect("shop", push=False))
    assert run.status == "success", run.error
    active = {r["name"] for r in items(30) if r["status"] == "active"}
    assert pulled(world) == active and len(active) == 20
    assert listing.calls[0] == {"status": "active"}  # the static param is sent
    assert [c.get("page") for c in listing.calls] == [None, "2", "3", "4", "5"]


def test_link_header_from_a_first_request_without_page_param(world: Any) -> None:
    listing = Listing(items(10))
    with serve(listing_app(listing)) as url:
        apply(world, shop_yaml(url, "/linked/items", "      type: link"))
        run = world.run(world.connect("shop", push=False))
    assert run.status == "success", run.error
    assert len(world.records()) == 10
    assert [c.get("page") for c in listing.calls] == [None, "2", "3", "4"]


def test_pagination_spec_errors() -> None:
    from mno.errors import BadInput
    from mno.sync import spec

    with pytest.raises(BadInput, match="next_url needs next_url_path"):
        spec.parse(shop_yaml("http://h", "/x", "      type: next_url"))
    with pytest.raises(BadInput, match="total_path or total_header"):
        spec.parse(
            shop_yaml("http://h", "/x", "      type: page\n      param: p\n      stop: total")
        )


def _shift_during_full_pass(world: Any, *, get: bool, verify: str = "auto") -> tuple[Any, Api]:
    """30 contacts listed by offset in (updated_at, id) order, 10 a page. During a full
    pass, after the first page, c2 is edited: it moves to the end of the listing and
    every record after it slides back by one, so c11 slides onto page one, already read,
    and the pass never lists it. c30 is really gone (deleted before the pass)."""
    api = Api(30)
    text = connector_yaml("crm", "crm", "URL", style="offset", size=10)
    if get:
        text = text.replace(
            "    id: id\n", "    id: id\n    get:\n      path: /offset/contacts/{id}\n"
        )
    if verify != "auto":
        text = text.replace("      size: 10\n", f"      size: 10\n      verify_deletes: {verify}\n")
    server = world.serve(api)
    world.monkeypatch.setenv("MNO_SECRET_CRM_TOKEN", "t0ken")
    apply(world, text.replace("URL", server.url))
    name = world.connect("crm", push=False)
    assert world.run(name).status == "success"
    assert len(world.records()) == 30
    api.delete("c30", soft=False)
    pages = []

    def shift() -> None:
        pages.append(1)
        if len(pages) == 2:  # the second listing request of the full pass
            api.edit("c2", name="moved")

    api.on_list = shift
    run = world.run(name, full=True)
    api.on_list = None
    return run, api


@pytest.mark.parametrize("get", [True, False], ids=["get", "relist"])
def test_full_pass_over_a_shifting_offset_listing_deletes_only_what_is_gone(
    world: Any, get: bool
) -> None:
    run, api = _shift_during_full_pass(world, get=get)
    assert run.status == "success", run.error
    names = {r.data["name"] for r in world.records()}
    assert "name 11" in names  # missed by the pass, found again: not deleted
    assert "name 30" not in names  # really gone
    assert "moved" in names
    assert len(world.records()) == 29
    assert run.counts["deleted"] == 1
    assert run.counts["rechecked"] == 2
    if get:
        assert sorted(api.gets) == ["c11", "c30"]
    else:
        assert api.gets == []


def test_without_the_recheck_the_shift_deletes_a_live_record(world: Any) -> None:
    """The scenario above is real: without the recheck the missed record is deleted."""
    run, _ = _shift_during_full_pass(world, get=False, verify="none")
    names = {r.data["name"] for r in world.records()}
    assert "name 11" not in names
    assert run.counts["deleted"] == 2
