"""The reference evaluator against qdrant-client 1.20 local mode, the Qdrant dialect's oracle.

300 points with rich random payloads and random named vectors go into `QdrantClient(":memory:")`;
for each of 200 random filters (built like qdrant-client's congruence tests build them: random
conditions over the keys and values present), `count` and `scroll` there must select the same
ids as `matches` over the same points.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from app.filters import Point, matches, parse_qdrant_filter
from tests import test_filters_strategies as gen

qdrant_client = pytest.importorskip("qdrant_client")
models = qdrant_client.models

POINTS = 300
FILTERS = 200
NAMED = ["img", "txt"]


@pytest.fixture(scope="module")
def points() -> list[Point]:
    r = random.Random(20240611)
    ids: list[int | str] = [*r.sample(range(10_000), POINTS // 2), *gen.UUIDS]
    ids += [str(uuid.UUID(int=r.getrandbits(128))) for _ in range(POINTS - len(ids))]
    return [Point(i, gen.payload(r), frozenset(n for n in NAMED if r.random() < 0.6)) for i in ids]


@pytest.fixture(scope="module")
def client(points: list[Point]) -> Any:
    client = qdrant_client.QdrantClient(":memory:")
    vectors = {name: models.VectorParams(size=2, distance=models.Distance.COSINE) for name in NAMED}
    client.create_collection("c", vectors_config=vectors)
    client.upsert(
        "c",
        [
            models.PointStruct(
                id=p.id, payload=p.payload, vector={name: [1.0, 0.5] for name in p.vector_names}
            )
            for p in points
        ],
    )
    return client


def _oracle(client: Any, raw: dict[str, Any]) -> tuple[int, set[Any]]:
    query = models.Filter.model_validate(raw)
    count = client.count("c", count_filter=query, exact=True).count
    records, _ = client.scroll("c", scroll_filter=query, limit=10_000)
    return count, {record.id for record in records}


def test_evaluator_matches_local_mode(client: Any, points: list[Point]) -> None:
    r = random.Random(7)
    checked = selective = 0
    for _ in range(FILTERS):
        raw = gen.qdrant_filter(r)
        node = parse_qdrant_filter(raw)
        count, expected = _oracle(client, raw)
        ours = {p.id for p in points if node is None or matches(node, p)}
        assert count == len(expected)
        assert ours == expected, (raw, sorted(map(str, ours ^ expected))[:5])
        checked += 1
        selective += 0 < len(expected) < len(points)
    assert checked == FILTERS
    assert selective > FILTERS // 3  # the filters really discriminate between points
