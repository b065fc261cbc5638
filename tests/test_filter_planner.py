"""Filtered search plans: exact below the threshold, graph above, and cached candidate sets
that never outlive a write."""

from __future__ import annotations

import httpx
import numpy as np
import pytest


@pytest.fixture(scope="module")
def url(server_factory) -> str:
    server = server_factory(env={"WAYPOINT_EXACT_THRESHOLD": "300"})
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(2000, 8)).astype(np.float32)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.put("/collections/plans", json={"vectors": {"size": 8, "distance": "Euclid"}})
        body = {
            "batch": {
                "ids": list(range(2000)),
                "vectors": vectors.tolist(),
                "payloads": [{"c10": i % 10, "c100": i % 100} for i in range(2000)],
            }
        }
        assert client.put("/collections/plans/points?wait=true", json=body).status_code == 200
    return server.url


def search(
    url: str, key: str, value: int, limit: int = 10, client: httpx.Client | None = None
) -> httpx.Response:
    """A filtered query, on `client`'s connection if given (else a new one)."""
    body = {
        "query": [0.0] * 8,
        "limit": limit,
        "filter": {"must": [{"key": key, "match": {"value": value}}]},
    }
    response = (client or httpx).post(f"{url}/collections/plans/points/query", json=body)
    assert response.status_code == 200, response.text
    return response


def wide_search(url: str) -> httpx.Response:
    """800 of 2000 points match: more than the exact threshold, so the graph is searched."""
    body = {
        "query": [0.0] * 8,
        "limit": 10,
        "filter": {"must": [{"key": "c10", "match": {"any": [1, 2, 3, 4]}}]},
    }
    return httpx.post(f"{url}/collections/plans/points/query", json=body)


def ids(response: httpx.Response) -> list[int]:
    return [p["id"] for p in response.json()["result"]["points"]]


def test_selective_filters_scan_and_broad_ones_use_the_graph(url: str) -> None:
    narrow = search(url, "c100", 7)  # 20 candidates: exact
    assert narrow.headers["waypoint-plan"] == "exact"
    assert "candidates=20" in narrow.headers["waypoint-plan-detail"]
    assert all(i % 100 == 7 for i in ids(narrow))
    broad = search(url, "c10", 3)  # 200 candidates... still under 300: exact
    assert broad.headers["waypoint-plan"] == "exact"
    wide = wide_search(url)
    assert wide.headers["waypoint-plan"] == "hnsw"
    found = ids(wide)
    assert len(found) == 10 and all(i % 10 in (1, 2, 3, 4) for i in found)


def test_repeated_filters_are_cached_until_the_next_write(url: str) -> None:
    """Each worker keeps its own cache: the searches share one connection, so one worker
    answers them all; with several workers the write lands on another, whose change the
    searching worker applies (and forgets its cached matches) before its next answer."""
    with httpx.Client() as client:
        search(url, "c100", 11, client=client)
        again = search(url, "c100", 11, limit=50, client=client)
        assert "filter=cached" in again.headers["waypoint-plan-detail"]
        assert set(ids(again)) == {i for i in range(2000) if i % 100 == 11}
        moved = httpx.post(
            f"{url}/collections/plans/points/payload?wait=true",
            json={"payload": {"c100": 12}, "points": [111]},
        )
        assert moved.status_code == 200
        after = search(url, "c100", 11, limit=50, client=client)
    assert "filter=sql" in after.headers["waypoint-plan-detail"]
    assert 111 not in ids(after) and len(ids(after)) == 19
    assert 111 in ids(search(url, "c100", 12, limit=50))


def test_plan_counts_are_exported_as_metrics(url: str) -> None:
    search(url, "c100", 5)
    wide_search(url)  # undeclared: sampled, searched first, confirmed after
    declared = {"field_name": "c10", "field_schema": "integer"}
    assert httpx.put(f"{url}/collections/plans/index?wait=true", json=declared).is_success
    listed = wide_search(url)  # declared: listed from memory, searched with an allow-bitmap
    assert "filter=memory" in listed.headers["waypoint-plan-detail"]
    text = httpx.get(f"{url}/metrics").text
    counts = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("waypoint_search")
    )
    assert int(counts['waypoint_search_plans_total{plan="exact-filtered"}']) >= 1
    assert int(counts['waypoint_search_plans_total{plan="hnsw-postfiltered"}']) >= 1
    assert int(counts['waypoint_search_plans_total{plan="hnsw-filtered"}']) >= 1
