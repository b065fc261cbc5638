"""A lean ASGI path for the hottest requests, `POST …/points/query` and `…/points/search`.

Litestar's routing, dependency injection, signature model and middleware stack cost more
CPU per request than the vector search itself, and one worker serves requests on one core.
This wrapper sits in front of the Litestar app and answers these two routes itself, with
the very functions the routes call (`parse.query_request` then `query_answer`, and their
search twins: same parsing, same service, same rendering), so a fast answer is byte for
byte the route's answer. A large body is decoded and parsed in the CPU pool.

Anything unusual goes to Litestar with the already-read body replayed: another method or
path, a key that is not accepted, a body that does not decode, any error while answering
(Litestar then answers again and renders its error envelope), services still loading. A
search has no side effects, so answering twice on an error path is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Litestar
from litestar.serialization import encode_json
from litestar.types import Message, Receive, Scope, Send

from app.api.auth import READ_ONLY, check_key
from app.api.bodies import SLICE_BYTES as LARGE_BODY
from app.api.qdrant import documents, parse, schemas
from app.api.qdrant.controllers import query_answer, search_answer
from app.services.container import Services
from app.services.search import SearchRequest

log = logging.getLogger(__name__)

PREFIX = "/collections/"
Answer = Callable[[Services, str, bytes], Awaitable[tuple[Any, dict[str, str]]]]


async def _query(services: Services, name: str, body: bytes) -> tuple[Any, dict[str, str]]:
    search = await _parsed(services, body, schemas.QueryPoints, parse.query_request)
    return await query_answer(services, name, search)


async def _search(services: Services, name: str, body: bytes) -> tuple[Any, dict[str, str]]:
    search = await _parsed(services, body, schemas.SearchPoints, parse.search_request)
    return await search_answer(services, name, search)


async def _parsed(
    services: Services,
    body: bytes,
    kind: type[msgspec.Struct],
    parse_body: Callable[[Any], SearchRequest],
) -> SearchRequest:
    """The body decoded and parsed, in the CPU pool when it is large: both steps cost time
    in proportion to its numbers (long vectors, sparse vectors, many prefetches), which a
    body of tens of megabytes would spend on the event loop. A query's Documents are
    embedded in between, as the route does."""
    large = len(body) >= LARGE_BODY
    decoded = await services.cpu.run(_decode, body, kind) if large else _decode(body, kind)
    found = documents.in_query(decoded) if isinstance(decoded, schemas.Prefetch) else None
    if found:
        await found.embed(services.embedding)
    return await services.cpu.run(parse_body, decoded) if large else parse_body(decoded)


ROUTES: dict[str, Answer] = {"/points/query": _query, "/points/search": _search}


def _decode(body: bytes, kind: type[msgspec.Struct]) -> Any:
    """As Litestar reads `data`: JSON, then converted with its lax (`strict=False`) rules."""
    return msgspec.json.decode(body, type=kind, strict=False)


def route_of(scope: Scope) -> tuple[str, Answer] | None:
    """(collection name, answer) when the request is one the fast path may take."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    name, slash, rest = path[len(PREFIX) :].partition("/")
    answer = ROUTES.get(slash + rest)
    return (name, answer) if name and answer is not None else None


class FastPath:
    """ASGI app: the fast path for search routes, Litestar (`app`) for everything else."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_of(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        received, body = await _read_body(receive, self.app.state.settings.max_request_bytes)
        response = None
        if body is not None:
            response = await self._answer(scope, route, body, started)
        if response is None:
            await self.app(scope, _replay(received, receive), send)
            return
        await _send_json(send, *response, started)

    async def _answer(
        self, scope: Scope, route: tuple[str, Answer], body: bytes, started: float
    ) -> tuple[bytes, dict[str, str]] | None:
        """The encoded 200 body and plan headers, or None: let Litestar answer."""
        services: Services | None = getattr(self.app.state, "services", None)
        if services is None or not services.loaded.is_set():
            return None  # still starting: the route waits for the load and says 503
        name, answer = route
        try:
            check_key(services.settings, scope, READ_ONLY)
            result, headers = await answer(await services.current(), name, body)
            elapsed = time.perf_counter() - started
            return encode_json({"result": result, "status": "ok", "time": elapsed}), headers
        except Exception:  # the route answers again, with its own error envelope
            log.debug("fast path: %s %s goes to the route", scope["method"], scope["path"])
            return None


async def _read_body(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """The messages received and the whole body (None: disconnected, or over the limit)."""
    received: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return received, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return received, chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(received: list[Message], receive: Receive) -> Receive:
    """A `receive` that hands out the messages already read, then reads on."""
    pending = list(received)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _send_json(send: Send, body: bytes, plans: dict[str, str], started: float) -> None:
    """A 200 with the headers the route sends, in its order, Server-Timing last."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in plans.items()]
    headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    elapsed_ms = (time.perf_counter() - started) * 1000
    headers.append((b"server-timing", f"app;dur={elapsed_ms:.3f}".encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
