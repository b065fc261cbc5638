"""Long lists of points are rendered and encoded to JSON in the CPU pool, item by item.

A page of thousands of points with their vectors is tens of megabytes of JSON. Building its
dicts and encoding them on the event loop would hold up every other request of the worker
for hundreds of milliseconds; so would encoding them in a pool thread in one call, since
msgspec holds the GIL for the whole of a call. `rendered` therefore renders and encodes a long
list one item at a time in the pool, and hands back the JSON array as `msgspec.Raw`, which
the response's encoder copies as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
from litestar.serialization import encode_json

from app.services.cpu import MANY_ITEMS, CpuPool

T = TypeVar("T")


async def rendered(
    cpu: CpuPool, items: Sequence[T], render: Callable[[T], Any]
) -> list[Any] | msgspec.Raw:
    """`[render(item) for item in items]`, or for a long list the same as encoded JSON."""
    if len(items) < MANY_ITEMS:  # as `CpuPool.run_per_item` decides
        return [render(item) for item in items]
    return await cpu.run(encoded_array, items, render)


def encoded_array(items: Sequence[T], render: Callable[[T], Any]) -> msgspec.Raw:
    """The JSON array of the rendered items, encoded one item at a time."""
    return msgspec.Raw(b"[" + b",".join(encode_json(render(item)) for item in items) + b"]")
