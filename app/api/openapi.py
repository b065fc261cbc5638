"""What the OpenAPI document (`/schema`) says beyond Litestar's defaults: operation ids that
are unique, and errors in the shape the routes really answer with.

Operation ids. Litestar's default joins a route's path components, its method (for a handler
that has several) and its handler's name, but skips a path component whose title already
occurs in the id built so far, even as part of a word. The Upstash routes
`…/delete-namespace` and `…/delete-namespace/{namespace}` share a handler, so their
parameter was skipped, both got one id, and Litestar refused to render the whole document:
`/schema` answered 500. Here every path parameter is kept, as `By<Name>`, so each path and
method has an id of its own.

Errors. Litestar lists its own `{status_code, detail, extra}` body for a route's 400, which
no route answers with: `app.api.envelope` renders every error in its dialect's envelope.
`document_errors` lists those envelopes instead, for the statuses any dialect route can
answer (the health and version routes keep Litestar's defaults).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, TypedDict

from litestar.openapi import ResponseSpec
from litestar.routes import HTTPRoute

from app.api.envelope import UPSTASH_PREFIX

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.handlers.http_handlers import HTTPRouteHandler
    from litestar.types import Method

NOT_IN_IDS = re.compile(r"[^0-9A-Za-z]+")
QDRANT_PREFIXES = ("/collections", "/aliases")
ERRORS = {
    400: "Bad input: malformed JSON, impossible values (`Wrong input: …`)",
    401: "No API key, or a wrong one (when keys are configured)",
    403: "A read-only API key on a write",
    404: "Unknown collection, index, point or route",
    422: "A body of the wrong shape or types",
}
ROUTE_ERRORS = {  # what only some routes answer; they declare it (`qdrant_errors`, …)
    409: "A collection, alias or index of that name already exists",
    429: "Too many active resumable queries (retry after a second)",
}


class QdrantErrorStatus(TypedDict):
    error: str


class QdrantError(TypedDict):
    """Qdrant's error envelope."""

    status: QdrantErrorStatus
    time: float


class UpstashError(TypedDict):
    """Upstash's error envelope."""

    error: str
    status: int


def qdrant_errors(*statuses: int) -> dict[int, ResponseSpec]:
    """`responses=` for a Qdrant route that can also answer these `ROUTE_ERRORS`."""
    return _responses(QdrantError, {status: ROUTE_ERRORS[status] for status in statuses})


def upstash_errors(*statuses: int) -> dict[int, ResponseSpec]:
    """`responses=` for an Upstash route that can also answer these `ROUTE_ERRORS`."""
    return _responses(UpstashError, {status: ROUTE_ERRORS[status] for status in statuses})


def _responses(envelope: type, descriptions: dict[int, str]) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(data_container=envelope, description=description)
        for status, description in descriptions.items()
    }


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


def document_errors(app: Litestar) -> None:
    """Give every dialect route its envelope for each status in `ERRORS`, keeping any
    response a handler declares itself. Call before the document is first rendered."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        if route.path.startswith(UPSTASH_PREFIX):
            envelope: type = UpstashError
        elif route.path.startswith(QDRANT_PREFIXES):
            envelope = QdrantError
        else:
            continue
        errors = _responses(envelope, ERRORS)
        for handler in route.route_handlers:
            handler.responses = {**errors, **(handler.responses or {})}
