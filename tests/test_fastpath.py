"""The search fast path (`app/api/qdrant/fastpath.py`) answers exactly as the Litestar route.

A trailing slash (`…/points/query/`) is routed by Litestar but not taken by the fast path,
so every answer here is compared with the route's answer to the same body, over real HTTP
against a live server: same status, same JSON (but `time`), same headers; keys enforced on
it; malformed bodies get Qdrant's error envelope (4xx, never 500); writes read at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import numpy as np
import pytest

from app.api.qdrant.fastpath import route_of
from app.models import SparseVector

ADMIN = "fast-admin"
READER = "fast-reader"
C = "fast_c"
DIM = 8

QUERIES: list[dict[str, Any]] = [
    {"query": [0.5] * DIM, "limit": 5},
    {"query": [0.5] * DIM, "limit": 3, "offset": 2, "params": {"hnsw_ef": 16}},
    {"query": [1, 0, 0, 0, 0, 0, 0, 0], "limit": "4", "with_payload": True},  # lax int
    {"query": [0.1] * DIM, "limit": 4, "params": {"exact": True}, "score_threshold": 0.0},
    {"query": [0.2] * DIM, "limit": 3, "with_vector": True, "with_payload": ["group"]},
    {
        "query": [0.3] * DIM,
        "limit": 5,
        "filter": {"must": [{"key": "group", "match": {"value": 1}}]},
    },
    {"query": 7, "limit": 3},  # a point id
    {"query": {"nearest": [0.4] * DIM}, "limit": 2, "using": ""},
    {"limit": 3},  # no query: points in id order
]
SEARCHES: list[dict[str, Any]] = [
    {"vector": [0.5] * DIM, "limit": 5},
    {"vector": [0.5] * DIM, "limit": 3, "offset": 1, "with_payload": True},
    {"vector": [0.9] * DIM, "limit": 3, "filter": {"must_not": [{"has_id": [1, 2]}]}},
]
BAD: list[tuple[str, bytes, int]] = [
    ("query", b"{not json", 400),
    ("query", b"", 422),
    ("query", b"[]", 422),
    ("query", b"null", 422),
    ("query", b'{"query": [1, 2], "limit": 3}', 400),  # wrong dimension
    ("query", b'{"query": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], "limit": "x"}', 422),
    ("query", b'{"query": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5], "limit": 0}', 400),
    ("query", b'{"query": {"fusion": "rrf"}}', 400),
    ("search", b'{"vector": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}', 422),  # no limit
    ("search", b'{"vector": "abc", "limit": 3}', 400),
]


@pytest.fixture(scope="module")
def secured(server_factory):
    return server_factory(env={"WAYPOINT_API_KEY": ADMIN, "WAYPOINT_READ_ONLY_API_KEY": READER})


@pytest.fixture(scope="module")
def http(secured) -> Iterator[httpx.Client]:
    headers = {"api-key": ADMIN}
    with httpx.Client(base_url=secured.url, timeout=30, headers=headers) as session:
        created = session.put(
            f"/collections/{C}", json={"vectors": {"size": DIM, "distance": "Cosine"}}
        )
        assert created.status_code == 200, created.text
        vectors = np.random.default_rng(5).normal(size=(60, DIM)).round(4)
        points = [
            {"id": i, "vector": vectors[i].tolist(), "payload": {"group": i % 3, "i": i}}
            for i in range(60)
        ]
        put = session.put(f"/collections/{C}/points?wait=true", json={"points": points})
        assert put.status_code == 200, put.text
        yield session


def both(http: httpx.Client, kind: str, body: bytes, **kwargs: Any) -> tuple[httpx.Response, ...]:
    """The fast path's and the Litestar route's answer to the same request."""
    path = f"/collections/{C}/points/{kind}"
    fast = http.post(path, content=body, **kwargs)
    routed = http.post(path + "/", content=body, **kwargs)
    return fast, routed


def assert_same(fast: httpx.Response, routed: httpx.Response) -> None:
    assert fast.status_code == routed.status_code, (fast.text, routed.text)
    fast_body, routed_body = fast.json(), routed.json()
    assert isinstance(fast_body.pop("time"), float)
    routed_body.pop("time")
    assert fast_body == routed_body
    ignored = {"date", "server-timing", "content-length", "waypoint-plan-detail"}
    assert list(fast.headers.keys()) == list(routed.headers.keys())
    assert {k: v for k, v in fast.headers.items() if k not in ignored} == {
        k: v for k, v in routed.headers.items() if k not in ignored
    }
    assert fast.headers["server-timing"].startswith("app;dur=")


def encode(body: dict[str, Any]) -> bytes:
    return httpx.Request("POST", "/", json=body).content


@pytest.mark.parametrize("body", QUERIES, ids=lambda b: encode(b).decode()[:60])
def test_query_answers_as_the_route(http: httpx.Client, body: dict[str, Any]) -> None:
    fast, routed = both(http, "query", encode(body))
    assert fast.status_code == 200, fast.text
    assert fast.json()["result"]["points"]
    assert_same(fast, routed)


@pytest.mark.parametrize("body", SEARCHES, ids=lambda b: encode(b).decode()[:60])
def test_search_answers_as_the_route(http: httpx.Client, body: dict[str, Any]) -> None:
    fast, routed = both(http, "search", encode(body))
    assert fast.status_code == 200, fast.text
    assert fast.json()["result"]
    assert_same(fast, routed)


def test_simple_query_bytes_match_the_route(http: httpx.Client) -> None:
    fast, routed = both(http, "query", encode({"query": [0.5] * DIM, "limit": 10}))
    assert fast.content.rsplit(b',"time":')[0] == routed.content.rsplit(b',"time":')[0]
    assert fast.headers["waypoint-plan"] == "exact"


@pytest.mark.parametrize("kind,body,status", BAD, ids=lambda x: str(x)[:40])
def test_malformed_bodies_get_the_error_envelope(
    http: httpx.Client, kind: str, body: bytes, status: int
) -> None:
    fast, routed = both(http, kind, body, headers={"content-type": "application/json"})
    assert fast.status_code == status, fast.text
    assert set(fast.json()) == {"status", "time"}
    assert fast.json()["status"]["error"]
    assert_same(fast, routed)


def test_missing_collection_is_404(http: httpx.Client) -> None:
    response = http.post("/collections/fast_nope/points/query", json={"query": [1] * DIM})
    assert response.status_code == 404, response.text
    assert "fast_nope" in response.json()["status"]["error"]


@pytest.mark.parametrize(
    "headers,status",
    [
        ({}, 401),
        ({"api-key": "wrong"}, 401),
        ({"authorization": "Bearer wrong"}, 401),
        ({"api-key": READER}, 200),
        ({"authorization": f"Bearer {READER}"}, 200),
        ({"api-key": ADMIN}, 200),
        ({"authorization": f"Bearer {ADMIN}"}, 200),
    ],
)
def test_keys_are_enforced(secured, headers: dict[str, str], status: int) -> None:
    for kind, body in (
        ("query", {"query": [0.5] * DIM}),
        ("search", {"vector": [0.5] * DIM, "limit": 2}),
    ):
        response = httpx.post(
            f"{secured.url}/collections/{C}/points/{kind}", json=body, headers=headers
        )
        assert response.status_code == status, response.text
        if status != 200:
            assert set(response.json()) == {"status", "time"}


def test_chunked_body_is_read_whole(http: httpx.Client) -> None:
    body = encode({"query": [0.5] * DIM, "limit": 4})

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    fast = http.post(f"/collections/{C}/points/query", content=chunks())
    routed = http.post(f"/collections/{C}/points/query/", content=body)
    assert_same(fast, routed)


def test_writes_are_read_at_once(http: httpx.Client) -> None:
    vector = [-3.0, 1, 4, -1, 5, -9, 2, 6]
    put = http.put(
        f"/collections/{C}/points?wait=true", json={"points": [{"id": 999, "vector": vector}]}
    )
    assert put.status_code == 200, put.text
    found = http.post(f"/collections/{C}/points/query", json={"query": vector, "limit": 1})
    assert found.json()["result"]["points"][0]["id"] == 999
    deleted = http.post(f"/collections/{C}/points/delete?wait=true", json={"points": [999]})
    assert deleted.status_code == 200, deleted.text
    found = http.post(f"/collections/{C}/points/search", json={"vector": vector, "limit": 1})
    assert found.json()["result"][0]["id"] != 999


@pytest.mark.parametrize(
    "method,path,taken",
    [
        ("POST", "/collections/c/points/query", True),
        ("POST", "/collections/c/points/search", True),
        ("POST", "/collections/c/points/query/", False),
        ("POST", "/collections/c/points/query/batch", False),
        ("POST", "/collections//points/query", False),
        ("POST", "/collections/c/points/scroll", False),
        ("GET", "/collections/c/points/query", False),
        ("POST", "/upstash/c/query", False),
    ],
)
def test_only_plain_search_routes_are_taken(method: str, path: str, taken: bool) -> None:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    assert (route_of(scope) is not None) is taken


def test_body_over_the_limit_is_413(server_factory) -> None:
    small = server_factory(env={"WAYPOINT_MAX_REQUEST_MB": "1"})
    body = b'{"query": [' + b"0.5, " * 300_000 + b'0.5], "limit": 3}'
    response = httpx.post(f"{small.url}/collections/{C}/points/query", content=body, timeout=30)
    assert response.status_code == 413, response.text
    assert set(response.json()) == {"status", "time"}


def test_a_large_body_is_decoded_and_parsed_in_the_cpu_pool() -> None:
    """Decoding and parsing cost time per number sent: a body of `LARGE_BODY` bytes or more
    is handled by the CPU pool, not the event loop, and parses to the same request."""
    import asyncio

    from app.api.qdrant import parse, schemas
    from app.api.qdrant.fastpath import LARGE_BODY, _parsed

    class Pool:
        def __init__(self) -> None:
            self.calls = 0

        async def run(self, fn, *args):
            self.calls += 1
            return fn(*args)

    class Services:
        cpu = Pool()

    small = b'{"query": [0.5, 0.5], "limit": 3}'
    size = LARGE_BODY // 4  # entries: the body is well over LARGE_BODY bytes
    large = b'{"query": {"indices": [%s], "values": [%s]}, "using": "t"}' % (
        ",".join(map(str, range(size))).encode(),
        ",".join(["1"] * size).encode(),
    )
    assert len(small) < LARGE_BODY <= len(large)
    services = Services()
    for body, pooled in ((small, 0), (large, 2)):  # the decode, then the parse
        request = asyncio.run(_parsed(services, body, schemas.QueryPoints, parse.query_request))
        assert services.cpu.calls == pooled
        direct = parse.query_request(msgspec.json.decode(body, type=schemas.QueryPoints))
        assert request.using == direct.using and request.limit == direct.limit
        for got, want in zip(numbers(request.vector), numbers(direct.vector), strict=True):
            assert np.array_equal(got, want)


def numbers(vector: Any) -> list[np.ndarray]:
    """A dense vector as one array, a sparse one as its indices and values."""
    if isinstance(vector, SparseVector):
        return [vector.indices, vector.values]
    return [np.asarray(vector)]
