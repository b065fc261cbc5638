"""Broad filters on undeclared fields: a sample estimates their share, the graph is searched
first and PostgreSQL confirms the results; a sample that misjudges falls back to listing.

Every answer is compared with numpy brute force over what the test wrote.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

N = 6000
DIM = 8


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[dict]]:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    # `half` is independent of the vectors; `far` holds for the ~7 % with a large x0
    payloads = [{"half": i % 2, "far": bool(v[0] > 1.5)} for i, v in enumerate(vectors)]
    return vectors, payloads


@pytest.fixture(scope="module")
def url(server_factory, data) -> str:
    vectors, payloads = data
    server = server_factory(env={"WAYPOINT_EXACT_THRESHOLD": "300"})
    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.put("/collections/sampled", json={"vectors": {"size": DIM, "distance": "Euclid"}})
        body = {"batch": {"ids": list(range(N)), "vectors": vectors.tolist(), "payloads": payloads}}
        assert client.put("/collections/sampled/points?wait=true", json=body).is_success
        deadline = time.monotonic() + 120
        while client.get("/collections/sampled").json()["result"]["status"] != "green":
            assert time.monotonic() < deadline, "graph not built"  # built in the background
            time.sleep(0.2)
    return server.url


def brute_force(data, query: np.ndarray, key: str, value, limit: int) -> list[int]:
    vectors, payloads = data
    allowed = np.array([p[key] == value for p in payloads])
    distances = np.linalg.norm(vectors - query, axis=1)
    distances[~allowed] = np.inf
    order = np.argsort(distances, kind="stable")[:limit]
    return [int(i) for i in order if np.isfinite(distances[i])]


def search(url: str, query: np.ndarray, key: str, value, limit: int = 10) -> httpx.Response:
    body = {
        "query": query.tolist(),
        "limit": limit,
        "filter": {"must": [{"key": key, "match": {"value": value}}]},
        "params": {"hnsw_ef": 200},
    }
    response = httpx.post(f"{url}/collections/sampled/points/query", json=body)
    assert response.status_code == 200, response.text
    return response


def detail(response: httpx.Response) -> dict[str, str]:
    return dict(part.split("=") for part in response.headers["waypoint-plan-detail"].split(";"))


def ids(response: httpx.Response) -> list[int]:
    return [p["id"] for p in response.json()["result"]["points"]]


def test_broad_filters_are_searched_first_and_confirmed(url: str, data) -> None:
    rng = np.random.default_rng(8)
    found = expected = 0
    for _ in range(20):
        query = rng.normal(size=DIM).astype(np.float32)
        response = search(url, query, "half", 1)
        info = detail(response)
        assert info["filter"] in {"sampled", "cached"}
        assert response.headers["waypoint-plan"] == "hnsw"
        assert abs(int(info["candidates"]) - N / 2) < N * 0.1  # the sampled estimate
        truth = brute_force(data, query, "half", 1, 10)
        got = ids(response)
        assert len(got) == 10 and all(data[1][i]["half"] == 1 for i in got)
        found += len(set(got) & set(truth))
        expected += len(truth)
    assert found / expected >= 0.95


def test_a_misjudged_filter_is_listed_after_all(url: str, data) -> None:
    """The nearest points to this query all lack `far`: confirming the graph's results
    finds too few matches, so the planner lists the matches and scans them."""
    query = np.zeros(DIM, dtype=np.float32)
    query[0] = -4.0
    response = search(url, query, "far", True, limit=20)
    assert detail(response)["filter"] == "sampled+sql"
    assert ids(response) == brute_force(data, query, "far", True, 20)
