"""Filters end to end: the live server answers like qdrant-client's exact local mode.

1,000 points with rich nested payloads (arrays, nulls, nested objects, datetimes, geo points)
go to both; 100 random filters are compared through `query_points`, `scroll` and `count`.
The server holds the points twice: once without payload indexes (filters run in SQL) and
once with every field declared (searches take their candidates from in-memory columns).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models

COLLECTION = "filtered"
INDEXED = "filtered_indexed"
INDEXES = {
    "city.name": "keyword",
    "city.pop": "integer",
    "tags": "keyword",
    "rating": "float",
    "count": "integer",
    "flag": "bool",
    "maybe": "integer",
    "when": "datetime",
    "loc": "geo",
    "text": "text",
}
N_POINTS = 1000
DIM = 8
CITIES = ["Berlin", "London", "Paris", "Rome", "Oslo"]
WORDS = ["red", "green", "blue", "fast", "slow", "cat", "dog"]
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


def payload(rng: random.Random) -> dict:
    data: dict = {
        "city": {"name": rng.choice(CITIES), "pop": rng.randint(0, 100)},
        "tags": rng.sample(WORDS, rng.randint(0, 3)),
        "rating": round(rng.uniform(0, 5), 2),
        "count": rng.randint(-5, 20),
        "flag": rng.random() < 0.5,
        "maybe": rng.choice([None, 1, 2, [], [None]]),
        "when": (BASE_TIME + timedelta(hours=rng.randint(0, 24 * 60))).isoformat(),
        "loc": {"lat": rng.uniform(40, 60), "lon": rng.uniform(-10, 30)},
        "items": [
            {"a": rng.randint(0, 5), "b": rng.choice(WORDS)} for _ in range(rng.randint(0, 3))
        ],
        "text": " ".join(rng.choices(WORDS, k=4)),
    }
    for key in list(data):
        if rng.random() < 0.1:
            del data[key]  # missing keys must behave like Qdrant's too
    return data


def condition(rng: random.Random, depth: int = 0) -> models.Condition:
    kind = rng.randrange(14 if depth < 2 else 13)
    match kind:
        case 0:
            return models.FieldCondition(
                key="city.name", match=models.MatchValue(value=rng.choice(CITIES))
            )
        case 1:
            return models.FieldCondition(
                key="tags", match=models.MatchAny(any=rng.sample(WORDS, 2))
            )
        case 2:
            return models.FieldCondition(
                key="city.name", match=models.MatchExcept(**{"except": rng.sample(CITIES, 2)})
            )
        case 3:
            low = rng.uniform(0, 4)
            return models.FieldCondition(key="rating", range=models.Range(gte=low, lt=low + 1.5))
        case 4:
            return models.FieldCondition(key="count", range=models.Range(gt=rng.randint(-5, 15)))
        case 5:
            start = BASE_TIME + timedelta(days=rng.randint(0, 50))
            return models.FieldCondition(
                key="when", range=models.DatetimeRange(gte=start, lt=start + timedelta(days=7))
            )
        case 6:
            return models.FieldCondition(key="tags", values_count=models.ValuesCount(gte=2))
        case 7:
            return models.IsEmptyCondition(
                is_empty=models.PayloadField(key=rng.choice(["tags", "maybe", "items"]))
            )
        case 8:
            return models.IsNullCondition(is_null=models.PayloadField(key="maybe"))
        case 9:
            return models.HasIdCondition(has_id=rng.sample(range(N_POINTS), 50))
        case 10:
            lat, lon = rng.uniform(42, 58), rng.uniform(-8, 28)
            return models.FieldCondition(
                key="loc",
                geo_bounding_box=models.GeoBoundingBox(
                    top_left=models.GeoPoint(lat=lat + 5, lon=lon - 5),
                    bottom_right=models.GeoPoint(lat=lat - 5, lon=lon + 5),
                ),
            )
        case 11:
            return models.FieldCondition(
                key="loc",
                geo_radius=models.GeoRadius(
                    center=models.GeoPoint(lat=rng.uniform(42, 58), lon=rng.uniform(-8, 28)),
                    radius=rng.uniform(100_000, 800_000),
                ),
            )
        case 12:
            return models.FieldCondition(
                key="flag", match=models.MatchValue(value=rng.random() < 0.5)
            )
        case _:
            return models.NestedCondition(
                nested=models.Nested(
                    key="items",
                    filter=models.Filter(
                        must=[
                            models.FieldCondition(
                                key="a", match=models.MatchValue(value=rng.randint(0, 5))
                            ),
                            models.FieldCondition(
                                key="b", match=models.MatchValue(value=rng.choice(WORDS))
                            ),
                        ]
                    ),
                )
            )


def random_filter(rng: random.Random, depth: int = 0) -> models.Filter:
    def some() -> list:
        return [
            random_filter(rng, depth + 1)
            if depth < 1 and rng.random() < 0.2
            else condition(rng, depth)
            for _ in range(rng.randint(1, 3))
        ]

    clauses = {}
    for clause in rng.sample(["must", "should", "must_not"], rng.randint(1, 2)):
        clauses[clause] = some()
    if rng.random() < 0.1:
        clauses["min_should"] = models.MinShould(conditions=some(), min_count=1)
    return models.Filter(**clauses)


@pytest.fixture(scope="module")
def clients(server):
    rng = random.Random(5)
    vectors = np.random.default_rng(5).normal(size=(N_POINTS, DIM)).tolist()
    points = [
        models.PointStruct(id=i, vector=vectors[i], payload=payload(rng)) for i in range(N_POINTS)
    ]
    remote = QdrantClient(url=server.url, prefer_grpc=False, timeout=60)
    local = QdrantClient(":memory:")
    for client, name in ((remote, COLLECTION), (local, COLLECTION), (remote, INDEXED)):
        client.create_collection(
            name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
        )
        client.upload_points(name, points, batch_size=250, wait=True)
    for field, schema in INDEXES.items():
        remote.create_payload_index(INDEXED, field, field_schema=schema, wait=True)
    return remote, local


FILTERS = [random_filter(random.Random(seed)) for seed in range(100)]


@pytest.mark.parametrize("name", [COLLECTION, INDEXED])
@pytest.mark.parametrize("index", range(len(FILTERS)))
def test_filter_agrees_with_local_mode(clients, index: int, name: str) -> None:
    remote, local = clients
    flt = FILTERS[index]
    query = np.random.default_rng(index).normal(size=DIM).tolist()
    expected = local.query_points(COLLECTION, query=query, query_filter=flt, limit=10).points
    got = remote.query_points(name, query=query, query_filter=flt, limit=10).points
    assert [p.id for p in got] == [p.id for p in expected]
    assert np.allclose([p.score for p in got], [p.score for p in expected], atol=1e-4)
    want = local.scroll(COLLECTION, scroll_filter=flt, limit=N_POINTS)[0]
    have = remote.scroll(name, scroll_filter=flt, limit=N_POINTS)[0]
    assert [r.id for r in have] == [r.id for r in want]
    assert remote.count(name, count_filter=flt).count == len(want)


def filter_sources(url: str) -> dict[str, float]:
    metrics = httpx.get(f"{url}/metrics").text
    return {
        line.split('"')[1]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("waypoint_filter_candidates_total")
    }


def test_indexed_searches_take_candidates_from_memory(server, clients) -> None:
    """Filters on declared fields skip SQL (those on `items`, not declared, cannot)."""
    remote, _ = clients
    before = filter_sources(server.url)
    fresh = [random_filter(random.Random(seed)) for seed in range(1000, 1100)]
    for flt in fresh:
        remote.query_points(INDEXED, query=[1.0] * DIM, query_filter=flt, limit=3)
    after = filter_sources(server.url)
    from_memory = after.get("memory", 0) - before.get("memory", 0)
    assert from_memory >= 0.4 * len(fresh), (before, after)
