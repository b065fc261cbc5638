"""Error envelopes of both dialects, chosen by path, for every error a request can meet:
domain errors, Litestar's own (404 route, 405, body validation) and anything unexpected."""

from __future__ import annotations

import logging
import time

from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from app.errors import WaypointError

log = logging.getLogger(__name__)

UPSTASH_PREFIX = "/upstash"


def elapsed(request: Request) -> float:
    started = request.scope.get("state", {}).get("started")
    return time.perf_counter() - started if started else 0.0


async def mark_started(request: Request) -> None:
    """`before_request` hook: remember when handling began, for Qdrant's `time` field."""
    request.scope.setdefault("state", {})["started"] = time.perf_counter()


def qdrant_ok(request: Request, result: object, headers: dict[str, str] | None = None) -> Response:
    return Response(
        {"result": result, "status": "ok", "time": elapsed(request)},
        status_code=200,
        headers=headers,
    )


def describe(exc: Exception) -> tuple[int, str]:
    """Status code and message of any exception, in words a client can act on."""
    if isinstance(exc, WaypointError):
        return exc.status, exc.message
    if isinstance(exc, ValidationException):
        problems = "; ".join(
            f"{item.get('key', 'body')}: {item.get('message')}"
            for item in (exc.extra if isinstance(exc.extra, list) else [])
            if isinstance(item, dict)
        )
        return 422, f"Validation error in JSON body: {problems or exc.detail}"
    if isinstance(exc, HTTPException):
        if isinstance(exc.__cause__, SerializationException):  # the body did not parse
            return 400, f"Format error in JSON body: {exc.detail}"
        return exc.status_code, str(exc.detail)
    if isinstance(exc, RecursionError):
        # msgspec decodes a body recursively and gives up on one nested deeper than the
        # stack allows; every other recursion over request input is bounded by the limits
        return 400, "Format error in JSON body: objects and arrays nest too deeply"
    log.exception("unexpected error", exc_info=exc)
    return 500, f"Service internal error: {type(exc).__name__}"


def handle_error(request: Request, exc: Exception) -> Response:
    status, message = describe(exc)
    headers = _headers_of(exc, status)
    if request.url.path.startswith(UPSTASH_PREFIX):
        return Response({"error": message, "status": status}, status_code=status, headers=headers)
    return Response(
        {"status": {"error": message}, "time": elapsed(request)},
        status_code=status,
        headers=headers,
    )


def _headers_of(exc: Exception, status: int) -> dict[str, str]:
    """The headers the error's status calls for: Litestar's own (a 405's `Allow`, which RFC
    9110 requires), and `Retry-After` on a 429."""
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    if status == 429:
        headers["Retry-After"] = "1"
    return headers
