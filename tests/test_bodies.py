"""Large bodies decoded in slices give exactly what one decode gives, errors included."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from app.api import bodies
from app.api.qdrant import schemas as qdrant
from app.api.upstash import schemas as upstash
from app.errors import BadRequest, ValidationFailed


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "SLICE_BYTES", 64)  # so that small test bodies are sliced


def points(count: int) -> list[dict]:
    rng = random.Random(count)
    return [
        {"id": i, "vector": [rng.random() for _ in range(8)], "payload": {"n": i, "s": "x" * 50}}
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (qdrant.UpsertPoints, {"points": points(30)}),
        (qdrant.UpsertPoints, {"points": [{"id": 1, "vector": {"a": [1.0]}}] * 20}),
        (
            qdrant.UpsertPoints,
            {"batch": {"ids": list(range(20)), "vectors": [[0.5] * 8] * 20, "payloads": None}},
        ),
        (list[upstash.Vector] | upstash.Vector, [{"id": "a", "vector": [1.0] * 40}] * 10),
        (list[upstash.Vector] | upstash.Vector, {"id": "a", "vector": [1.0] * 40, "extra": 1}),
        (
            list[upstash.Vector] | upstash.Vector,
            [{"id": "a", "sparseVector": {"indices": [1], "values": [1.0]}, "metadata": {}}] * 9,
        ),
    ],
)
def test_slices_decode_as_one_decode_does(kind, body) -> None:
    raw = json.dumps(body).encode()
    assert len(raw) > bodies.SLICE_BYTES
    assert bodies.decode(raw, kind) == msgspec.json.decode(raw, type=kind, strict=False)


@pytest.mark.parametrize(
    "body",
    [
        {"points": [{"id": 1.5, "vector": [1.0] * 20}]},  # a float id
        {"points": [{"vector": [1.0] * 20}] * 3},  # no id
        {"points": "not a list" * 10},
        {"batch": {"vectors": [[1.0] * 30]}},  # no ids
    ],
)
def test_a_wrong_shape_is_a_validation_error(body) -> None:
    raw = json.dumps(body).encode()
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=qdrant.UpsertPoints, strict=False)
    with pytest.raises(ValidationFailed):
        bodies.decode(raw, qdrant.UpsertPoints)


def test_text_that_is_not_json_is_a_bad_request() -> None:
    raw = json.dumps({"points": points(10)}).encode()[:-40]
    with pytest.raises(BadRequest, match="Format error"):
        bodies.decode(raw, qdrant.UpsertPoints)
