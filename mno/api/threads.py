"""Store work from async routes runs on a small, bounded thread pool.

With one thread per in-flight request, dozens of threads contend for the GIL and the
connection pool on a single core; a handful of store threads keeps throughput up.
``api.db_threads`` in the profile sets the size (default 6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_limiter: Any = None


def _get_limiter() -> Any:
    global _limiter
    if _limiter is None:
        import anyio

        from mno import settings

        _limiter = anyio.CapacityLimiter(int(settings.profile_value("api.db_threads", 6)))
    return _limiter


async def run(fn: Callable[..., T], *args: Any) -> T:
    import anyio.to_thread

    return await anyio.to_thread.run_sync(fn, *args, limiter=_get_limiter())
