"""The group commit on its own: batching, per-item outcomes, a failed batch item by item."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mno.api.group_commit import GroupCommit
from mno.errors import NotFound, Unavailable


class Ledger:
    """A write function that keeps what it committed and refuses some items."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.committed: list[int] = []

    def write(self, items: Sequence[int]) -> list[int | BaseException]:
        if any(n < 0 for n in items):  # a bad item makes the whole transaction fail
            raise ValueError(f"negative item in {list(items)}")
        self.batches.append(list(items))
        out: list[int | BaseException] = []
        for n in items:
            if n == 13:
                out.append(NotFound("13 is refused"))
            else:
                self.committed.append(n)
                out.append(n * 10)
        return out


async def _submit_all(gc: GroupCommit[int, int], items: list[int]) -> list[object]:
    async def one(n: int) -> object:
        try:
            return await gc.submit(n)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            return exc

    return await asyncio.gather(*(one(n) for n in items))


def test_concurrent_items_share_batches_and_get_their_own_outcomes():
    ledger = Ledger()
    gc: GroupCommit[int, int] = GroupCommit(ledger.write, max_batch=8)
    items = list(range(20)) + [13]
    outcomes = asyncio.run(_submit_all(gc, items))
    assert outcomes[:13] == [n * 10 for n in range(13)]
    assert isinstance(outcomes[13], NotFound) and isinstance(outcomes[20], NotFound)
    assert outcomes[14:20] == [n * 10 for n in range(14, 20)]
    assert sorted(ledger.committed) == [n for n in range(20) if n != 13]
    assert len(ledger.batches) < len(items)  # grouped, never one transaction each
    assert max(len(b) for b in ledger.batches) <= 8


def test_a_failed_batch_is_written_again_item_by_item():
    ledger = Ledger()
    gc: GroupCommit[int, int] = GroupCommit(ledger.write)
    outcomes = asyncio.run(_submit_all(gc, [1, 2, -1, 3]))
    assert outcomes[0] == 10 and outcomes[1] == 20 and outcomes[3] == 30
    assert isinstance(outcomes[2], ValueError)
    assert sorted(ledger.committed) == [1, 2, 3]


def test_an_unreachable_store_fails_the_whole_batch():
    def down(items: Sequence[int]) -> list[int | BaseException]:
        raise Unavailable("cannot reach the store")

    gc: GroupCommit[int, int] = GroupCommit(down)
    outcomes = asyncio.run(_submit_all(gc, [1, 2, 3]))
    assert all(isinstance(o, Unavailable) for o in outcomes)
    with pytest.raises(Unavailable):
        asyncio.run(gc.submit(4))
