"""A long list rendered in the pool encodes to exactly the JSON of the list rendered inline."""

from __future__ import annotations

import asyncio
import json

import msgspec
from litestar.serialization import encode_json

from app.api import encoding
from app.services.cpu import MANY_ITEMS, CpuPool


def render(item: int) -> dict:
    return {"id": item, "vector": [item / 3, -1.5], "payload": {"s": 'é\u2028"', "n": None}}


def test_a_long_list_is_the_same_json_as_one_encode() -> None:
    items = list(range(MANY_ITEMS + 7))

    async def both() -> tuple[object, object]:
        pool = CpuPool(2)
        try:
            return (
                await encoding.rendered(pool, items[:3], render),
                await encoding.rendered(pool, items, render),
            )
        finally:
            pool.shutdown()

    short, long = asyncio.run(both())
    assert short == [render(i) for i in items[:3]]
    assert isinstance(long, msgspec.Raw)
    envelope = encode_json({"result": long, "status": "ok"})
    assert json.loads(envelope) == {"result": [render(i) for i in items], "status": "ok"}
