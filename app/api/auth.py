"""API keys: `WAYPOINT_API_KEY` may do anything, `WAYPOINT_READ_ONLY_API_KEY` only read.

The key travels as an `api-key` header (Qdrant clients) or `Authorization: Bearer` (Upstash
clients). Handlers that only read are marked `opt={"read_only": True}`; GETs always read.
"""

from __future__ import annotations

import hmac

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from app.errors import Forbidden, Unauthorized
from app.settings import Settings

READ_ONLY = {"read_only": True}


def presented_key(connection: ASGIConnection) -> str | None:
    key = connection.headers.get("api-key")
    if key:
        return key
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(given: str | None, expected: str | None) -> bool:
    return bool(given and expected) and hmac.compare_digest(given.encode(), expected.encode())


def require_api_key(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    """Guard for every dialect route; open when no key is configured."""
    settings: Settings = connection.app.state.settings
    if not (settings.api_key or settings.read_only_api_key):
        return
    key = presented_key(connection)
    if _matches(key, settings.api_key):
        return
    if _matches(key, settings.read_only_api_key):
        if connection.scope["method"] == "GET" or handler.opt.get("read_only"):
            return
        raise Forbidden("Forbidden: this API key is read-only")
    raise Unauthorized("Unauthorized: Invalid API key or token")
