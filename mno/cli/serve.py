"""mno serve: run the hub API (Developer API and IDM) under uvicorn.

The API (FastAPI, uvicorn) and the store are imported when the server starts, not for
``--help``.
"""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes sharing the socket.")
    ] = 1,
) -> None:
    """Serve the hub API; prints its address on stderr. The OpenAPI document is at
    /openapi.json, its pages at /docs; /healthz, /readyz and /metrics for operations.
    SIGTERM stops it gracefully (requests in flight finish)."""
    from mno.api import server
    from mno.cli.output import info
    from mno.store.db import get_engine

    get_engine()  # fail fast (exit 3) when the store cannot be reached
    server.serve(
        host,
        port,
        lambda url: info(f"listening on {url} (docs at /docs)"),
        workers=workers,
    )
