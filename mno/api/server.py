"""``mno serve``: the API as a FastAPI app under uvicorn (``/openapi.json`` included).

uvicorn is imported when a server starts, not with this module.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute

from mno import __version__, settings
from mno.api import context, cors, ops
from mno.api.errors import PROBLEM, install_error_handlers
from mno.api.routes import build_router
from mno.errors import Unavailable


def build_app() -> FastAPI:
    app = FastAPI(
        title="mno hub API",
        version=__version__,
        description="Developer API (HTTP Basic with an app key) and IDM.",
        # mno counts requests itself (/metrics); FastAPI's OpenTelemetry hooks would ask
        # the global providers whether they are configured on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    routes = flat_routes(build_router().routes)
    # the hot calls first: a request is matched against the routes in order
    app.router.routes.extend(sorted(routes, key=lambda r: getattr(r, "path", "") not in HOT))
    app.include_router(ops.router)  # /readyz, /metrics
    app.add_middleware(cors.FrontendCors)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = FastAPI.openapi(app)
            problem_only(spec)
            context.document(spec)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


HOT = ("/v1/idm/authorize", "/v1/dev/usage")


def flat_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The routes of included routers, in order, as one list.

    FastAPI keeps an included router as a node that is searched (and its route versions
    checked) on every request; the API's routers are included with no prefix,
    dependency or other setting, so their routes are the same objects served directly,
    and the app matches a request against one list."""
    out: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if isinstance(included, APIRouter):
            out.extend(flat_routes(included.routes))
        else:
            out.append(route)
    return out


def problem_only(spec: dict[str, Any]) -> None:
    """Error answers are ``application/problem+json`` only: drop the ``application/json``
    that FastAPI adds beside it for a response model."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM in content:
                    content.pop("application/json", None)


def asgi(listen: bool = True) -> Any:
    """The served ASGI app: metrics and request ids around FastAPI (a factory, so that
    each worker process builds its own, with its own access-change listener)."""
    if listen:
        listen_for_access_changes()
    return ops.Metrics(context.RequestContext(build_app()))


def listen_for_access_changes() -> None:
    """Drop this process's cached access answers when another host changes access
    (``mno.access.revocation.listen``); without it the cache TTL bounds staleness."""
    from mno.access import revocation
    from mno.store.db import normalize_url

    try:
        revocation.listen(normalize_url(settings.db_url()))
    except Exception as exc:  # reported; the caches fall back to their TTL
        logging.getLogger("mno.api").warning("no access-change wake-ups (%s)", exc)


GRACEFUL_S = 30  # on SIGTERM/SIGINT: stop accepting, let requests in flight finish


def config(host: str, port: int, workers: int = 1, listen: bool = True, **kwargs: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        "mno.api.server:asgi" if workers > 1 else asgi(listen),
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        **kwargs,
    )


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def log_to_stderr() -> None:
    """The API's log lines (logger ``mno.api``, each with its request id) on stderr, at
    the profile's ``api.log_level`` (default warning: errors only; info: one line per
    request)."""
    logger = logging.getLogger("mno.api")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(str(settings.profile_value("api.log_level", "warning")).upper())


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    on_listen: Callable[[str], None] | None = None,
    workers: int = 1,
) -> None:
    """Serve until stopped; ``on_listen(url)`` is called once the socket accepts
    connections (the bound port, when ``port`` is 0). With ``workers`` > 1, that many
    processes share the socket (uvicorn's supervisor restarts one that dies)."""
    import uvicorn

    log_to_stderr()
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    if on_listen is not None:
        on_listen(url_of(sock))
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        cfg = config(host, port, workers)
        Multiprocess(cfg, sockets=[sock]).run()
        return
    uvicorn.Server(config(host, port)).run(sockets=[sock])


def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[Any, int]:
    """Start the API in a daemon thread; returns (server, bound port). It shares its
    process's caches, so it starts no access-change listener (``mno serve`` does)."""
    import uvicorn

    server = uvicorn.Server(config(host, port, listen=False))
    thread = threading.Thread(target=server.run, daemon=True, name="mno-api")
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("the API server did not start")
    bound = server.servers[0].sockets[0].getsockname()[1]
    return server, bound
