"""`Server-Timing: app;dur=<ms>` on every response: the time spent inside the service, so
benchmarks can tell server-side latency from network and client time; then the stages the
request timed (`app.stages`: `lock;dur=…, engine;dur=…` for a resumable page)."""

from __future__ import annotations

import time

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app import stages


class ServerTimingMiddleware(ASGIMiddleware):
    scopes = ("http",)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        with stages.recording() as record:

            async def timed_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    timing = f"app;dur={elapsed_ms:.3f}"
                    if record:
                        timing = f"{timing}, {stages.header_value(record)}"
                    headers = list(message.get("headers", []))
                    headers.append((b"server-timing", timing.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            await next_app(scope, receive, timed_send)
