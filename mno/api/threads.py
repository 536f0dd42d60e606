"""Store work from async routes runs on a small, bounded thread pool.

With one thread per in-flight request, dozens of threads contend for the GIL and the
connection pool on a single core; a handful of store threads keeps throughput up.
``api.db_threads`` in the profile sets the size (default 6).

Each event loop gets its own limiter. A limiter's waiters are woken with a plain
``asyncio.Event``, which is bound to one loop and is not thread-safe: shared between the
loops of several servers in one process (``mno serve`` in a thread, the agents'
listener), a token released on one loop's thread could leave a waiter on another loop
asleep, and a token held by a task of a loop that stopped would never come back.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from mno import settings

T = TypeVar("T")
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def _get_limiter() -> Any:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        size = int(settings.profile_value("api.db_threads", 6))
        limiter = _limiters[loop] = anyio.CapacityLimiter(size)
    return limiter


async def run(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(fn, *args, limiter=_get_limiter())
