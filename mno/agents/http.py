"""The agents' HTTP listener: ``/metrics``, ``/healthz`` and every router in
``mno.agents.registry.HTTP_ROUTERS`` (callbacks, the hub API), served by uvicorn.

It binds 127.0.0.1 by default; put a reverse proxy in front to expose callback routes.

FastAPI and uvicorn are imported when the listener is built, not with this module.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import TYPE_CHECKING, Any

from mno.agents import registry
from mno.errors import Unavailable

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mno.agents.runner import Runner


def build_app(runner: Runner | None = None) -> FastAPI:
    from fastapi import FastAPI, Response

    from mno.api.errors import install_error_handlers

    app = FastAPI(title="mno agents", docs_url=None, redoc_url=None)
    install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        if runner is None or runner.healthy():
            return Response('{"status":"ok"}', media_type="application/json")
        return Response('{"status":"unhealthy"}', status_code=503, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        if runner is None:
            return Response("", media_type="text/plain")
        body, content_type = runner.metrics.render()
        return Response(body, media_type=content_type)

    for ref in registry.HTTP_ROUTERS:
        module, _, attr = ref.partition(":")
        app.include_router(getattr(importlib.import_module(module), attr))
    return app


def serve_in_thread(runner: Runner | None, host: str, port: int) -> Any:
    """Start uvicorn in a daemon thread; returns the server (set ``should_exit`` to stop)."""
    import uvicorn

    from mno.api.context import RequestContext

    config = uvicorn.Config(
        RequestContext(build_app(runner)),  # request ids, as on mno serve
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn's records go through the runtime's handler and format
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="mno-http")
    thread.start()
    for _ in range(250):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        raise Unavailable(f"cannot listen on {host}:{port}", "is the port in use?")
    return server
