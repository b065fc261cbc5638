"""API keys: `WAYPOINT_API_KEY` may do anything, `WAYPOINT_READ_ONLY_API_KEY` only read.

The key travels as an `api-key` header (Qdrant clients) or `Authorization: Bearer` (Upstash
clients). Handlers that only read are marked `opt={"read_only": True}`; GETs always read;
handlers marked `opt={"public": True}` (health probes) need no key.

This is an ASGI middleware rather than a Litestar guard: Litestar runs synchronous guards in
a worker thread and copies the route handler for every guard call, which cost more than the
search itself on the hot path.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from app.errors import Forbidden, Unauthorized
from app.settings import Settings

READ_ONLY = {"read_only": True}
PUBLIC = {"public": True}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def presented_key(scope: Scope) -> str | None:
    key = _header(scope, b"api-key")
    if key:
        return key
    scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())


def check_access(settings: Settings, scope: Scope) -> None:
    """Raise Unauthorized / Forbidden unless the request's key allows this route."""
    check_key(settings, scope, scope["route_handler"].opt)


def check_key(settings: Settings, scope: Scope, opt: Mapping[str, object]) -> None:
    """`check_access` for a handler whose `opt` is known without routing (the fast path)."""
    if not (settings.api_key or settings.read_only_api_key):
        return
    if opt.get("public"):
        return
    key = presented_key(scope)
    if _matches(key, settings.api_key):
        return
    if _matches(key, settings.read_only_api_key):
        if scope["method"] == "GET" or opt.get("read_only"):
            return
        raise Forbidden("Forbidden: this API key is read-only")
    raise Unauthorized("Unauthorized: Invalid API key or token")


class ApiKeyMiddleware(ASGIMiddleware):
    scopes = ("http",)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        check_access(scope["litestar_app"].state.settings, scope)
        await next_app(scope, receive, send)
