"""Group commit: concurrent requests' writes committed together by one writer.

A route hands its item to ``GroupCommit.submit`` and awaits its own outcome. Per event
loop one writer drains the queue: it takes everything that arrived (up to ``max_batch``),
writes it in one transaction on a store thread, and answers each request only after
that transaction committed, so every answer is durable. While a batch commits, the next
one gathers, so the batch size follows the load with no timer.

The batch function returns one outcome per item (a value, or an exception for that item
alone). When the batch as a whole fails for a reason other than the store being
unreachable, each item is written again in a transaction of its own, so one bad item
never takes the others down with it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from mno.api import threads
from mno.errors import Unavailable

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self, write: Callable[[Sequence[T]], list[R | BaseException]], max_batch: int = 256
    ) -> None:
        self._write = write
        self._max = max_batch
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue[T, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: T) -> R:
        """Queue ``item``; return its outcome once its transaction committed (or raise)."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue(self)
        return await queue.submit(loop, item)

    def write_each(self, items: Sequence[T]) -> list[R | BaseException]:
        """Write the items one transaction each (after a failed batch)."""
        out: list[R | BaseException] = []
        for item in items:
            try:
                out.extend(self._write([item]))
            except Unavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - reported: it is this item's answer
                out.append(exc)
        return out

    def run_batch(self, items: Sequence[T]) -> list[R | BaseException]:
        try:
            results = self._write(items)
        except Unavailable:
            raise
        except Exception:  # re-raised alone, else each item reports its own outcome
            if len(items) == 1:
                raise
            return self.write_each(items)
        if len(results) != len(items):
            raise RuntimeError("the batch writer returned the wrong number of outcomes")
        return results


class _Queue(Generic[T, R]):
    def __init__(self, owner: GroupCommit[T, R]) -> None:
        self.owner = owner
        self.pending: list[tuple[T, asyncio.Future[R]]] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, loop: asyncio.AbstractEventLoop, item: T) -> R:
        future: asyncio.Future[R] = loop.create_future()
        self.pending.append((item, future))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self.drain())
        return await future

    async def drain(self) -> None:
        while self.pending:
            batch = self.pending[: self.owner._max]
            del self.pending[: len(batch)]
            items = [item for item, _ in batch]
            try:
                results: list[Any] = await threads.run(self.owner.run_batch, items)
            except asyncio.CancelledError:
                for _, future in batch + self.pending:
                    future.cancel()
                self.pending.clear()
                raise
            except Exception as exc:  # noqa: BLE001 - reported to every request of the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the client went away; the write stands
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
