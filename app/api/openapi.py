"""How the OpenAPI document (`/schema`) names its operations.

Litestar's default `operationId` joins a route's path components, its method (for a handler
that has several) and its handler's name, but skips a path component whose title already
occurs in the id built so far, even as part of a word. The Upstash routes
`…/delete-namespace` and `…/delete-namespace/{namespace}` share a handler, so their
parameter was skipped, both got one id, and Litestar refused to render the whole document:
`/schema` answered 500. Here every path parameter is kept, as `By<Name>`, so each path and
method has an id of its own.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.handlers.http_handlers import HTTPRouteHandler
    from litestar.types import Method

NOT_IN_IDS = re.compile(r"[^0-9A-Za-z]+")


def operation_id(route_handler: HTTPRouteHandler, http_method: Method, path: list[Any]) -> str:
    """`CollectionsByCollectionNamePointsQueryQueryPoints`: path, method when the handler
    has several, handler name, each word title-cased."""
    words = [part if isinstance(part, str) else f"By_{part.name}" for part in path]
    if len(route_handler.http_methods) > 1:
        words.append(http_method)
    words.append(route_handler.handler_name)
    return "".join(_title(word) for word in words)


def _title(word: str) -> str:
    return NOT_IN_IDS.sub("", word.title())
