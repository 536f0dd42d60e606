"""One error shape for every API answer: ``application/problem+json`` (RFC 9457) with
``type``, ``title``, ``status`` and ``detail`` (the CLI's message), the same code and
message as ``{"error": {"code": ..., "message": ...}}``, and the request's id
(``request_id``, see ``mno.api.context``).

``ApiRoute`` is the route class of the API router: it refuses query parameters the
route does not declare (422, naming the parameter), enforces the body size limit and
turns domain errors and validation errors into that shape with the proper status, so
the behaviour is the same on ``mno serve`` and on the agents' listener. ``errors()``
documents those statuses in each route's OpenAPI ``responses``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from mno.api import config, context
from mno.errors import (
    BadInput,
    Conflict,
    Forbidden,
    InvalidTransition,
    MnoError,
    NotFound,
    Unavailable,
)


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    error: ErrorDetail
    request_id: str | None = Field(
        default=None, description="The request's id, as in the X-Request-Id header."
    )


PROBLEM = "application/problem+json"


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": _title(status),
        "status": status,
        "detail": message,
        "error": {"code": code, "message": message},
    }
    request_id = context.request_id()
    if request_id is not None:
        problem["request_id"] = request_id
    body = json.dumps(problem)
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def from_exception(exc: Exception) -> Response | None:
    """The error answer for ``exc`` (as the routes map it); None: re-raise."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    if isinstance(exc, StarletteHTTPException):
        code = {401: "unauthorized", 404: "not_found"}.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers = {"WWW-Authenticate": 'Basic realm="mno"'}
            return error_response(401, code, "bad app credentials", headers)
        return error_response(exc.status_code, code, str(exc.detail), headers)
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "bad_request", "the body is not valid JSON")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = str(first.get("msg", "invalid request"))
        return error_response(422, "invalid", f"{where}: {msg}" if where else msg)
    if type(exc).__name__ == "DataError" and type(exc).__module__.startswith("sqlalchemy"):
        return error_response(422, "invalid", "a value is not acceptable to the store")
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", exc.message)
    if isinstance(exc, Forbidden):
        return error_response(403, "forbidden", exc.message)
    if isinstance(exc, Conflict | InvalidTransition):
        return error_response(409, "conflict", exc.message)
    if isinstance(exc, BadInput):
        return error_response(422, "invalid", str(exc))
    if isinstance(exc, Unavailable):
        return error_response(503, "unavailable", "a backing service is unavailable")
    if isinstance(exc, MnoError):
        return error_response(409, "refused", exc.message)
    return None


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, its dependencies' included."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        names.update(field.alias for field in current.query_params)
        stack.extend(current.dependencies)
    return names


def _takes_only_the_request(route: APIRoute) -> bool:
    """Whether the route's endpoint is ``async def f(request: Request) -> Response``: no
    parameter or dependency for FastAPI to solve, and nothing to serialise."""
    import inspect
    import typing

    d = route.dependant
    if d.request_param_name is None or not inspect.iscoroutinefunction(route.endpoint):
        return False
    if (
        d.path_params
        or d.query_params
        or d.header_params
        or d.cookie_params
        or d.body_params
        or d.dependencies
        or d.security_scopes_param_name
        or d.response_param_name
        or d.background_tasks_param_name
        or d.websocket_param_name
        or d.http_connection_param_name
    ):
        return False
    try:
        returns = typing.get_type_hints(route.endpoint).get("return")
    except (NameError, TypeError):
        return False
    return isinstance(returns, type) and issubclass(returns, Response)


class ApiRoute(APIRoute):
    """Every API route: unknown query parameters, body size and NUL checks, and the
    domain's errors as problems.

    An endpoint that takes only the request and answers a ``Response`` itself (the IDM's
    ``authorize``, the sign-in pages) is called directly: FastAPI's handler would solve
    an empty set of dependencies and pass the response through, at a cost that shows on
    the hottest route. Everything else in the request's path is the same."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if _takes_only_the_request(self):
            endpoint = self.endpoint

            async def plain(request: Request) -> Response:
                response: Response = await endpoint(request)
                return response

            handler = plain
        known = _query_names(self.dependant)

        async def route(request: Request) -> Response:
            unknown = (
                [name for name in request.query_params if name not in known]
                if request.scope.get("query_string")
                else []
            )
            if unknown:
                return error_response(422, "invalid", f"unknown query parameter {unknown[0]!r}")
            if request.method in ("POST", "PUT", "PATCH"):
                limit = config.get().max_body
                length = request.headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > limit):
                    return error_response(413, "too_large", f"the body is over {limit} bytes")
                body = await request.body()
                if len(body) > limit:
                    return error_response(413, "too_large", f"the body is over {limit} bytes")
                if b"\\u0000" in body or b"\x00" in body:
                    return error_response(422, "invalid", "NUL characters are not allowed")
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - mapped below or re-raised
                response = from_exception(exc)
                if response is None:
                    raise
                return response

        return route


_DESCRIPTIONS = {
    400: "Malformed request: the body is not valid JSON",
    401: "Missing or bad app credentials",
    403: "The app may not act on this tenant",
    404: "Not found (or not visible to this app)",
    409: "Conflict with the current state, or an Idempotency-Key used for another request",
    413: "Body too large",
    422: (
        "Invalid input: a field, header or query parameter fails validation, a query "
        "parameter is unknown, or the body holds NUL characters"
    ),
    429: "Rate limited; see Retry-After and the RateLimit-* headers",
}
WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 422, 429)
"""What a route that takes a JSON body can answer besides its successes."""
READ_ERRORS = (401, 403, 404, 409, 422, 429)
"""What a route without a body can answer (no 400: nothing to parse; no 413)."""


def errors(
    codes: tuple[int, ...] = WRITE_ERRORS, notes: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: each status in ``codes`` as problem+json, its
    description followed by the route's own ``notes`` (what else leads to it)."""
    notes = notes or {}
    return {
        code: {
            "model": ErrorBody,
            "description": f"{_DESCRIPTIONS[code]}; {notes[code]}"
            if code in notes
            else _DESCRIPTIONS[code],
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for code in codes
    }


ERRORS = errors()
READ = errors(READ_ERRORS)


def install_error_handlers(app: FastAPI) -> None:
    """Errors outside the routes in the same shape: unknown paths (404), methods a path
    does not serve (405, with ``Allow`` naming every method it does serve) and requests
    that fail validation before a route runs."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return error_response(exc.status_code, code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> Response:
        return error_response(422, "invalid", "invalid request")


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: Any) -> list[str]:
    """Every method some route serves on the request's path (Starlette's own 405 names
    only the first route that matches the path). Each method is tried against the
    routes, included routers too."""
    allowed = []
    for method in _METHODS:
        probe = {**scope, "method": method}
        if any(
            isinstance(route, BaseRoute) and route.matches(probe)[0] is Match.FULL
            for route in app.router.routes
        ):
            allowed.append(method)
    return allowed
