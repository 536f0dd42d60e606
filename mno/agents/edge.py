"""The edge agent: keeps the HTTPS edge (Caddy) routing every live instance.

Each tick builds Caddy's config from the store (instances' endpoints and domains, the
operator's certificates) and loads it through the admin API when it differs from what
Caddy runs (``mno.nex.edge.sync``), so routes follow instances within one tick. With no
``edge`` section in the platform YAML the tick does nothing. Each host that runs Caddy
runs this agent against its own Caddy (``edge.admin``).
"""

from __future__ import annotations

from typing import Any

from mno import platform
from mno.agents.base import TickContext, TickResult

DEFAULT_OPTIONS: dict[str, Any] = {}


def tick(ctx: TickContext) -> TickResult:
    from mno.nex import edge

    result = TickResult()
    config = platform.load()
    if config.edge is None:
        result.details["edge"] = "not configured"
        return result
    out = edge.sync(ctx.db_url, config)
    result.claimed = 1
    result.done = 1
    result.details.update(routes=out.routes, hosts=out.hosts, loaded=int(out.changed))
    if out.changed:
        ctx.log.info("edge config loaded: %d routes, %d hosts", out.routes, out.hosts)
    return result
