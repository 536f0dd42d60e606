"""The API's own limits against a real server on loopback: ``Retry-After`` in seconds
and as an HTTP date, ``X-RateLimit-Remaining: 0`` until ``X-RateLimit-Reset`` (an epoch
time or seconds). The server counts requests that arrive before it said they may."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.sync.apps import Listing, items, listing_app, serve


def run_linked(world: Any, listing: Listing) -> tuple[Any, float]:
    from mno.store.db import session_scope
    from mno.sync import spec

    with serve(listing_app(listing)) as url:
        path: Path = world.tmp / "shop.yaml"
        path.write_text(
            f"""name: shop
app: shop
base_url: {url}
entities:
  - canonical: item
    list: {{path: /linked/items}}
    pagination: {{type: link}}
    mapping: {{name: name}}
"""
        )
        with session_scope(world.url) as s:
            spec.apply(s, spec.load_file(path), str(path))
        name = world.connect("shop", push=False)
        started = time.monotonic()
        run = world.run(name, sleep=time.sleep)  # real waits
        return run, time.monotonic() - started


@pytest.mark.parametrize("style", ["seconds", "date"])
def test_retry_after_once_is_waited_out(world: Any, style: str) -> None:
    listing = Listing(items(9), retry_once=style, retry_after=2)
    run, took = run_linked(world, listing)
    assert run.status == "success", run.error
    assert len(world.records()) == 9
    assert listing.too_early == 0
    assert took >= 1.0 if style == "date" else took >= 2.0
    assert len(listing.calls) == 1 + 3  # the refused request, then three pages


@pytest.mark.parametrize("reset", ["epoch", "delta"])
def test_ratelimit_remaining_zero_waits_until_reset(world: Any, reset: str) -> None:
    listing = Listing(items(12), quota_every=2, quota_reset=1.0, reset_style=reset)
    run, took = run_linked(world, listing)
    assert run.status == "success", run.error
    assert len(world.records()) == 12
    assert listing.too_early == 0  # never asked while the quota was spent
    assert len(listing.calls) == 4
    assert took >= 0.9


def test_quota_wait_reads_the_headers() -> None:
    import httpx

    from mno.sync.rest import quota_wait

    def resp(**headers: str) -> httpx.Response:
        return httpx.Response(200, headers=headers)

    assert quota_wait(resp(**{"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "9"})) is None
    assert quota_wait(resp(**{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"})) == 7.0
    soon = time.time() + 5
    wait = quota_wait(resp(**{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(soon)}))
    assert wait is not None and 4 < wait <= 5
    assert quota_wait(resp(**{"RateLimit-Remaining": "0", "RateLimit-Reset": "2"})) == 2.0
    assert quota_wait(resp()) is None
