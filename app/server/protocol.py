"""The HTTP/1.1 protocol the server runs: uvicorn's httptools protocol, one send per response.

uvicorn writes a response's status line and headers when the app sends
`http.response.start`, and the body when it sends `http.response.body`: two `send()` system
calls, and on loopback two deliveries that each wake the client. For a small JSON answer the
first call cost more than parsing the request (a profile of the event-loop thread at 8
clients: 23 % of its time in that write). Here the transport holds what one turn of the event
loop writes and sends it at the end of that turn, so headers and body leave together; a
streamed or large response is only delayed by one loop turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """`--http` for uvicorn: its httptools protocol on a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))


class CoalescingTransport:
    """A transport whose writes of one loop turn become one write at the end of the turn.

    Everything but writing and closing goes to the wrapped transport unchanged.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what this turn wrote, in one call (nothing once the connection is closing)."""
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(b"".join(held))  # one chunk: joined is the chunk itself

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
