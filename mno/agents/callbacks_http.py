"""The provisioning callback over HTTP: ``POST /v1/callbacks/provisioning`` on the agents'
listener (``registry.HTTP_ROUTERS``), answering with ``mno.nex.callbacks.handle``.

A callback is a small JSON document: a body over ``MAX_BODY_BYTES`` is refused with 413
as soon as that is known (its Content-Length, or while a chunked body streams), so a huge
body is never held in memory.

(No ``from __future__ import annotations`` here: FastAPI resolves the route's
annotations at run time.)
"""

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mno.nex.callbacks import PATH, handle

MAX_BODY_BYTES = 1024 * 1024


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


router = APIRouter()


@router.post(PATH, include_in_schema=True, tags=["callbacks"])
async def provisioning_callback(request: Request) -> JSONResponse:
    raw = await read_limited(request, MAX_BODY_BYTES)
    if raw is None:
        return JSONResponse(
            {"error": f"the body is over the {MAX_BODY_BYTES} byte limit"}, status_code=413
        )
    signature, timestamp = request.headers.get("x-signature"), request.headers.get("x-timestamp")
    answer = await anyio.to_thread.run_sync(lambda: handle(raw, signature, timestamp))
    return JSONResponse(answer.body, status_code=answer.status)
