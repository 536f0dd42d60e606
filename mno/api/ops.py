"""Operations endpoints of ``mno serve``: ``/readyz`` and ``/metrics``.

- ``/readyz``: 200 when the store answers a trivial query, else 503 (problem+json);
- ``/metrics``: Prometheus text format (``prometheus_client``): requests by method,
  route template and status (``mno_http_requests_total``) and their latency
  (``mno_http_request_duration_seconds``), recorded by ``Metrics`` around the whole app
  With several workers each process counts its own requests
  unless ``PROMETHEUS_MULTIPROC_DIR`` is set (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from mno.api import threads
from mno.api.errors import error_response
from mno.store.db import session_scope

router = APIRouter()

REQUESTS = Counter(
    "mno_http_requests_total", "HTTP requests answered", ("method", "route", "status")
)
LATENCY = Histogram(
    "mno_http_request_duration_seconds",
    "HTTP request latency",
    ("method", "route"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _ping() -> None:
    with session_scope(write=False) as s:
        s.exec(sa.select(1)).one()  # type: ignore[call-overload]


@router.get("/readyz", include_in_schema=False)
async def readyz() -> Response:
    try:
        await threads.run(_ping)
    except Exception:  # noqa: BLE001 - any failure to reach the store means not ready
        return error_response(503, "unavailable", "the store cannot be reached")
    return Response('{"status":"ready"}', media_type="application/json")


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, media_type=CONTENT_TYPE_LATEST)


def _route(scope: Any) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return "unmatched"


class Metrics:
    """ASGI middleware counting every HTTP request by route template and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route(scope)
            method = scope.get("method", "")
            REQUESTS.labels(method, route, str(status)).inc()
            LATENCY.labels(method, route).observe(time.perf_counter() - start)
