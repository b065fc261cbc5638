"""Qdrant dialect through the official client: search results equal a numpy brute force.

One module-scoped collection with three named vectors (Cosine, Dot, Euclid) and 1000 points
is shared by the read-only tests; tests that write use collections of their own.
"""

from __future__ import annotations

import gc
import threading
import uuid
import warnings

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

DIM = 16
N_POINTS = 1000
MAIN = "search_main"
NAMES = ("cos", "dot", "euc")
DISTANCES = {
    "cos": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "euc": models.Distance.EUCLID,
}
SCORE_TOL = 1e-4


# ----------------------------------------------------------------------------- brute force


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit length in float32, as Qdrant stores Cosine vectors (zero stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


def stored(name: str, vectors: np.ndarray) -> np.ndarray:
    return normalise(vectors) if name == "cos" else np.asarray(vectors, dtype=np.float32)


def scores_of(name: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Qdrant scores (float64) of every row of the stored `matrix` against a raw query."""
    rows = stored(name, matrix).astype(np.float64)
    q = stored(name, query).astype(np.float64)
    if name == "euc":
        return np.sqrt(((rows - q) ** 2).sum(axis=1))
    return rows @ q


def brute_force(
    name: str,
    matrix: np.ndarray,
    ids: list,
    query: np.ndarray,
    limit: int,
    offset: int = 0,
    exclude=None,
) -> tuple[list, list[float]]:
    """Best-first ids and scores: descending for Cosine/Dot, ascending distance for Euclid."""
    scores = scores_of(name, matrix, query)
    order = np.argsort(scores if name == "euc" else -scores, kind="stable")
    ranked = [(ids[i], float(scores[i])) for i in order if ids[i] != exclude]
    window = ranked[offset : offset + limit]
    return [pid for pid, _ in window], [score for _, score in window]


def assert_same_hits(points, want_ids: list, want_scores: list[float]) -> None:
    got_ids = [p.id for p in points]
    assert got_ids == want_ids
    np.testing.assert_allclose([p.score for p in points], want_scores, rtol=0, atol=SCORE_TOL)


# -------------------------------------------------------------------------------- fixtures


def new_client(url: str, **kwargs) -> QdrantClient:
    return QdrantClient(url=url, prefer_grpc=False, **kwargs)


@pytest.fixture(scope="module")
def client(server) -> QdrantClient:
    qc = new_client(server.url)
    yield qc
    qc.close()


@pytest.fixture(scope="module")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=30) as session:
        yield session


class Dataset:
    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.ids = list(range(N_POINTS))
        self.vectors = {
            name: rng.standard_normal((N_POINTS, DIM)).astype(np.float32) for name in NAMES
        }
        # A few points share a direction (Cosine) to make the ranking less trivial.
        self.vectors["cos"][::50] *= 3.0
        self.payloads = [
            {
                "i": i,
                "parity": "even" if i % 2 == 0 else "odd",
                "a": {"b": i * 2, "c": f"c{i}"},
                "tags": [f"t{i % 3}", f"t{i % 5}"],
            }
            for i in self.ids
        ]
        self.rng = np.random.default_rng(seed + 1000)

    def queries(self, count: int) -> np.ndarray:
        return self.rng.standard_normal((count, DIM)).astype(np.float32)

    def brute(self, name: str, query: np.ndarray, limit: int, offset: int = 0, exclude=None):
        return brute_force(name, self.vectors[name], self.ids, query, limit, offset, exclude)


@pytest.fixture(scope="module")
def data(client: QdrantClient) -> Dataset:
    dataset = Dataset()
    client.create_collection(
        MAIN,
        vectors_config={
            name: models.VectorParams(size=DIM, distance=DISTANCES[name]) for name in NAMES
        },
    )
    batch = 200
    for start in range(0, N_POINTS, batch):
        points = [
            models.PointStruct(
                id=i,
                vector={name: dataset.vectors[name][i].tolist() for name in NAMES},
                payload=dataset.payloads[i],
            )
            for i in dataset.ids[start : start + batch]
        ]
        result = client.upsert(MAIN, points=points, wait=True)
        assert result.status == models.UpdateStatus.COMPLETED
    return dataset


# ------------------------------------------------------------------------------- the client


def test_client_compatibility_check_does_not_warn(server) -> None:
    """The default `check_compatibility=True` probe (in a daemon thread) finds a good version."""
    gc.collect()  # earlier tests' unclosed SDK clients would warn here when collected
    before = set(threading.enumerate())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qc = new_client(server.url)
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=30)
        qc.close()
    assert [str(w.message) for w in caught] == []


# --------------------------------------------------------------------------- nearest search


@pytest.mark.parametrize("name", NAMES)
def test_query_points_equals_brute_force(client, data: Dataset, name: str) -> None:
    for query in data.queries(100):
        response = client.query_points(MAIN, query=query.tolist(), using=name, limit=10)
        assert_same_hits(response.points, *data.brute(name, query, 10))


@pytest.mark.parametrize("name", NAMES)
def test_query_points_offset(client, data: Dataset, name: str) -> None:
    for query in data.queries(20):
        response = client.query_points(MAIN, query=query.tolist(), using=name, limit=10, offset=5)
        assert_same_hits(response.points, *data.brute(name, query, 10, offset=5))


@pytest.mark.parametrize("name", NAMES)
def test_score_threshold_is_strict(client, data: Dataset, name: str) -> None:
    for query in data.queries(20):
        want_ids, want_scores = data.brute(name, query, 10)
        # A threshold halfway between ranks 6 and 7: the first six pass.
        between = (want_scores[5] + want_scores[6]) / 2
        response = client.query_points(
            MAIN, query=query.tolist(), using=name, limit=10, score_threshold=between
        )
        assert_same_hits(response.points, want_ids[:6], want_scores[:6])
        # A threshold equal to the 7th score, as the server computed it: strict, so 6 remain.
        plain = client.query_points(MAIN, query=query.tolist(), using=name, limit=10).points
        exact_t = plain[6].score
        response = client.query_points(
            MAIN, query=query.tolist(), using=name, limit=10, score_threshold=exact_t
        )
        assert [p.id for p in response.points] == [p.id for p in plain[:6]]
        if name == "euc":
            assert all(p.score < exact_t for p in response.points)
        else:
            assert all(p.score > exact_t for p in response.points)


def test_query_batch_points(client, data: Dataset) -> None:
    queries = data.queries(9)
    requests = [
        models.QueryRequest(
            query=q.tolist(), using=NAMES[i % 3], limit=3 + i, offset=i % 2, with_payload=True
        )
        for i, q in enumerate(queries)
    ]
    responses = client.query_batch_points(MAIN, requests=requests)
    assert len(responses) == len(requests)
    for i, (query, response) in enumerate(zip(queries, responses, strict=True)):
        name = NAMES[i % 3]
        want_ids, want_scores = data.brute(name, query, 3 + i, offset=i % 2)
        assert_same_hits(response.points, want_ids, want_scores)
        assert [p.payload for p in response.points] == [data.payloads[j] for j in want_ids]


def test_legacy_search_endpoint(http: httpx.Client, data: Dataset) -> None:
    for i, query in enumerate(data.queries(15)):
        name = NAMES[i % 3]
        body = {"vector": {"name": name, "vector": query.tolist()}, "limit": 5}
        response = http.post(f"/collections/{MAIN}/points/search", json=body)
        assert response.status_code == 200, response.text
        envelope = response.json()
        assert envelope["status"] == "ok"
        assert isinstance(envelope["time"], float)
        hits = envelope["result"]
        want_ids, want_scores = data.brute(name, query, 5)
        assert [h["id"] for h in hits] == want_ids
        np.testing.assert_allclose([h["score"] for h in hits], want_scores, atol=SCORE_TOL)
        for hit in hits:
            assert isinstance(hit["version"], int)
            assert hit.get("payload") is None  # the server default is with_payload=false
            assert hit.get("vector") is None


def test_legacy_search_batch_endpoint(http: httpx.Client, data: Dataset) -> None:
    queries = data.queries(6)
    searches = [
        {
            "vector": {"name": NAMES[i % 3], "vector": q.tolist()},
            "limit": 4,
            "offset": 1,
            "with_payload": ["i"],
        }
        for i, q in enumerate(queries)
    ]
    response = http.post(f"/collections/{MAIN}/points/search/batch", json={"searches": searches})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert len(result) == len(searches)
    for i, (query, hits) in enumerate(zip(queries, result, strict=True)):
        want_ids, want_scores = data.brute(NAMES[i % 3], query, 4, offset=1)
        assert [h["id"] for h in hits] == want_ids
        np.testing.assert_allclose([h["score"] for h in hits], want_scores, atol=SCORE_TOL)
        assert [h["payload"] for h in hits] == [{"i": j} for j in want_ids]


@pytest.mark.parametrize("name", NAMES)
def test_query_by_point_id_excludes_the_point(client, data: Dataset, name: str) -> None:
    for point_id in (0, 1, 50, 333, 999):
        response = client.query_points(MAIN, query=point_id, using=name, limit=10)
        query = data.vectors[name][point_id]
        want_ids, want_scores = data.brute(name, query, 10, exclude=point_id)
        assert point_id not in [p.id for p in response.points]
        assert_same_hits(response.points, want_ids, want_scores)


def test_query_by_point_id_with_offset(client, data: Dataset) -> None:
    response = client.query_points(MAIN, query=77, using="euc", limit=5, offset=3)
    want = data.brute("euc", data.vectors["euc"][77], 5, offset=3, exclude=77)
    assert_same_hits(response.points, *want)


# -------------------------------------------------------------------- payloads and vectors


def test_with_payload_forms(client, data: Dataset) -> None:
    query = data.queries(1)[0].tolist()

    def hits(with_payload):
        points = client.query_points(
            MAIN, query=query, using="dot", limit=5, with_payload=with_payload
        ).points
        return [p.id for p in points], [p.payload for p in points]

    ids, payloads = hits(True)
    assert payloads == [data.payloads[i] for i in ids]
    assert hits(False)[1] == [None] * 5
    assert hits(["i", "parity"])[1] == [{"i": i, "parity": data.payloads[i]["parity"]} for i in ids]
    assert hits(models.PayloadSelectorInclude(include=["tags"]))[1] == [
        {"tags": data.payloads[i]["tags"]} for i in ids
    ]
    assert hits(models.PayloadSelectorExclude(exclude=["a", "tags"]))[1] == [
        {"i": i, "parity": data.payloads[i]["parity"]} for i in ids
    ]
    # Nested dot paths keep the nesting, for include and exclude alike.
    assert hits(["a.b"])[1] == [{"a": {"b": i * 2}} for i in ids]
    assert hits(models.PayloadSelectorExclude(exclude=["a.c", "tags", "parity"]))[1] == [
        {"i": i, "a": {"b": i * 2}} for i in ids
    ]
    # A key no point has gives an empty payload, not an error.
    assert hits(["missing"])[1] == [{}] * 5


def test_with_payload_forms_on_retrieve_and_scroll(client, data: Dataset) -> None:
    records = client.retrieve(MAIN, ids=[3, 4], with_payload=["a.c", "i"])
    assert [r.payload for r in records] == [{"a": {"c": "c3"}, "i": 3}, {"a": {"c": "c4"}, "i": 4}]
    records = client.retrieve(MAIN, ids=[3], with_payload=False)
    assert records[0].payload is None
    records, _ = client.scroll(
        MAIN, limit=2, with_payload=models.PayloadSelectorExclude(exclude=["a", "tags"])
    )
    assert [r.payload for r in records] == [{"i": 0, "parity": "even"}, {"i": 1, "parity": "odd"}]


def test_with_vectors_true_returns_all_and_cosine_normalised(client, data: Dataset) -> None:
    query = data.queries(1)[0].tolist()
    points = client.query_points(MAIN, query=query, using="euc", limit=4, with_vectors=True).points
    assert len(points) == 4
    for point in points:
        assert set(point.vector) == set(NAMES)
        cos = np.asarray(point.vector["cos"])
        np.testing.assert_allclose(cos, normalise(data.vectors["cos"][point.id]), atol=1e-6)
        assert abs(np.linalg.norm(cos) - 1) < 1e-5
        # Dot and Euclid vectors are stored as sent (float32 values survive JSON exactly).
        assert point.vector["dot"] == data.vectors["dot"][point.id].tolist()
        assert point.vector["euc"] == data.vectors["euc"][point.id].tolist()


def test_with_vectors_list_of_names(client, data: Dataset) -> None:
    query = data.queries(1)[0].tolist()
    points = client.query_points(
        MAIN, query=query, using="cos", limit=3, with_vectors=["cos", "euc"], with_payload=False
    ).points
    for point in points:
        assert set(point.vector) == {"cos", "euc"}
        assert point.payload is None
    records = client.retrieve(MAIN, ids=[10, 11], with_vectors=["dot"])
    for record in records:
        assert record.vector == {"dot": data.vectors["dot"][record.id].tolist()}
    records = client.retrieve(MAIN, ids=[10], with_vectors=False)
    assert records[0].vector is None


# ------------------------------------------------------------------- collections and points


def test_get_collection_and_listing(client, http: httpx.Client, data: Dataset) -> None:
    info = client.get_collection(MAIN)
    assert info.points_count == N_POINTS
    assert info.status == models.CollectionStatus.GREEN
    assert info.config.params.vectors == {
        name: models.VectorParams(size=DIM, distance=DISTANCES[name]) for name in NAMES
    }
    raw = http.get(f"/collections/{MAIN}").json()["result"]
    assert raw["config"]["params"]["vectors"] == {
        "cos": {"size": DIM, "distance": "Cosine"},
        "dot": {"size": DIM, "distance": "Dot"},
        "euc": {"size": DIM, "distance": "Euclid"},
    }
    assert MAIN in [c.name for c in client.get_collections().collections]
    assert client.collection_exists(MAIN) is True
    assert client.collection_exists("search_no_such_collection") is False
    assert client.count(MAIN).count == N_POINTS
    assert client.count(MAIN, exact=True).count == N_POINTS


def test_retrieve(client, data: Dataset) -> None:
    records = client.retrieve(MAIN, ids=[5, 999, 12345, 5, 0], with_vectors=True)
    # Missing ids are skipped, duplicates returned once, request order kept.
    assert [r.id for r in records] == [5, 999, 0]
    for record in records:
        assert record.payload == data.payloads[record.id]
        assert record.vector["euc"] == data.vectors["euc"][record.id].tolist()
    assert client.retrieve(MAIN, ids=[]) == []


def test_scroll_pages_visit_every_point_once(client, data: Dataset) -> None:
    seen: list = []
    offset = None
    pages = 0
    while True:
        records, offset = client.scroll(
            MAIN, limit=128, offset=offset, with_payload=["i"], with_vectors=False
        )
        pages += 1
        seen.extend(r.id for r in records)
        assert all(r.payload == {"i": r.id} for r in records)
        if offset is None:
            break
    assert seen == data.ids
    assert pages == -(-N_POINTS // 128)


def test_unnamed_vector_collection(client, http: httpx.Client) -> None:
    name = "search_unnamed"
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((40, 4)).astype(np.float32)
    client.create_collection(name, vectors_config=models.VectorParams(size=4, distance="Dot"))
    client.upsert(
        name,
        points=[
            models.PointStruct(id=i, vector=vectors[i].tolist(), payload={"i": i})
            for i in range(40)
        ],
    )
    raw = http.get(f"/collections/{name}").json()["result"]
    assert raw["config"]["params"]["vectors"] == {"size": 4, "distance": "Dot"}
    assert client.get_collection(name).config.params.vectors == models.VectorParams(
        size=4, distance=models.Distance.DOT
    )
    query = rng.standard_normal(4).astype(np.float32)
    response = client.query_points(name, query=query.tolist(), limit=5, with_vectors=True)
    want = brute_force("dot", vectors, list(range(40)), query, 5)
    assert_same_hits(response.points, *want)
    for point in response.points:
        assert point.vector == vectors[point.id].tolist()
    records = client.retrieve(name, ids=[7], with_vectors=True)
    assert records[0].vector == vectors[7].tolist()
    raw_hit = http.post(
        f"/collections/{name}/points/query",
        json={"query": query.tolist(), "limit": 1, "with_vector": True},
    ).json()["result"]["points"][0]
    assert isinstance(raw_hit["vector"], list)
    client.delete_collection(name)


def test_uuid_ids_come_back_canonical(client) -> None:
    name = "search_uuids"
    client.create_collection(name, vectors_config=models.VectorParams(size=4, distance="Euclid"))
    rng = np.random.default_rng(12)
    uuids = [uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i) for i in range(6)]
    sent = [str(u).upper() if i % 2 else u.hex for i, u in enumerate(uuids)]
    canonical = [str(u) for u in uuids]
    vectors = rng.standard_normal((6, 4)).astype(np.float32)
    client.upsert(
        name,
        points=[
            models.PointStruct(id=pid, vector=vectors[i].tolist(), payload={"k": i})
            for i, pid in enumerate(sent)
        ],
    )
    assert client.count(name).count == 6
    # Retrieve by any spelling; the answer is lower-case and hyphenated.
    records = client.retrieve(name, ids=[canonical[0], sent[1], uuids[2].hex.upper()])
    assert [r.id for r in records] == canonical[:3]
    points = client.query_points(name, query=vectors[3].tolist(), limit=6).points
    assert points[0].id == canonical[3]
    assert sorted(p.id for p in points) == sorted(canonical)
    records, _ = client.scroll(name, limit=10)
    assert [r.id for r in records] == sorted(canonical)
    # Query by a UUID in another spelling excludes that point.
    points = client.query_points(name, query=sent[3].upper(), limit=6).points
    assert canonical[3] not in [p.id for p in points]
    assert len(points) == 5
    # Upserting another spelling of an existing id replaces the point.
    client.upsert(name, points=[models.PointStruct(id=canonical[1].upper(), vector=[0.0] * 4)])
    assert client.count(name).count == 6
    assert client.retrieve(name, ids=[canonical[1]])[0].payload == {}
    client.delete_collection(name)


def test_scroll_orders_ints_then_uuids(client) -> None:
    name = "search_scroll_mixed"
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance="Dot"))
    rng = np.random.default_rng(13)
    ints = sorted({int(x) for x in rng.integers(0, 2**63, 30)} | {0, 1, 2**64 - 1})
    uuids = sorted(str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i)) for i in range(20))
    everything = ints + uuids
    shuffled = [everything[i] for i in rng.permutation(len(everything))]
    client.upsert(
        name,
        points=[models.PointStruct(id=pid, vector=[1.0, 0.5], payload={}) for pid in shuffled],
    )
    seen: list = []
    offset = None
    while True:
        records, offset = client.scroll(name, limit=7, offset=offset)
        seen.extend(r.id for r in records)
        if offset is None:
            break
    assert seen == everything
    # An offset is inclusive: the page starts at that id.
    records, next_offset = client.scroll(name, limit=3, offset=uuids[0])
    assert [r.id for r in records] == uuids[:3]
    assert next_offset == uuids[3]
    client.delete_collection(name)


def test_delete_points_by_id(client) -> None:
    name = "search_delete"
    client.create_collection(name, vectors_config=models.VectorParams(size=3, distance="Euclid"))
    vectors = np.random.default_rng(14).standard_normal((50, 3)).astype(np.float32)
    client.upsert(
        name,
        points=[models.PointStruct(id=i, vector=vectors[i].tolist()) for i in range(50)],
    )
    gone = [0, 7, 8, 49, 1000]  # 1000 never existed
    result = client.delete(name, points_selector=models.PointIdsList(points=gone), wait=True)
    assert result.status == models.UpdateStatus.COMPLETED
    assert client.count(name).count == 46
    assert client.retrieve(name, ids=gone) == []
    alive = [i for i in range(50) if i not in gone]
    for i in (0, 7, 20):
        points = client.query_points(name, query=vectors[i].tolist(), limit=50).points
        assert sorted(p.id for p in points) == alive
        want = brute_force("euc", vectors[alive], alive, vectors[i], 50)
        assert_same_hits(points, *want)
    records, _ = client.scroll(name, limit=100)
    assert [r.id for r in records] == alive
    client.delete_collection(name)


def test_upsert_without_wait_is_visible_on_next_read(client) -> None:
    name = "search_nowait"
    client.create_collection(name, vectors_config=models.VectorParams(size=4, distance="Cosine"))
    rng = np.random.default_rng(15)
    for round_ in range(5):
        vector = rng.standard_normal(4).astype(np.float32)
        result = client.upsert(
            name,
            points=[models.PointStruct(id=round_, vector=vector.tolist(), payload={"r": round_})],
            wait=False,
        )
        assert result.status in (models.UpdateStatus.ACKNOWLEDGED, models.UpdateStatus.COMPLETED)
        assert client.retrieve(name, ids=[round_])[0].payload == {"r": round_}
        top = client.query_points(name, query=vector.tolist(), limit=1).points[0]
        assert top.id == round_
        assert abs(top.score - 1.0) < 1e-5
        assert client.count(name).count == round_ + 1
    client.delete_collection(name)


def test_reupsert_replaces_vector_and_payload(client) -> None:
    name = "search_replace"
    client.create_collection(
        name,
        vectors_config={
            "a": models.VectorParams(size=4, distance="Euclid"),
            "b": models.VectorParams(size=2, distance="Dot"),
        },
    )
    rng = np.random.default_rng(16)
    a = rng.standard_normal((20, 4)).astype(np.float32)
    b = rng.standard_normal((20, 2)).astype(np.float32)
    client.upsert(
        name,
        points=[
            models.PointStruct(
                id=i, vector={"a": a[i].tolist(), "b": b[i].tolist()}, payload={"v": 1, "x": i}
            )
            for i in range(20)
        ],
    )
    old = client.query_points(name, query=a[5].tolist(), using="a", limit=1).points[0]
    assert old.id == 5
    new_a = (a[5] + 100).astype(np.float32)
    new_b = np.array([9.0, -9.0], dtype=np.float32)
    client.upsert(
        name,
        points=[
            models.PointStruct(id=5, vector={"a": new_a.tolist(), "b": new_b.tolist()}, payload={})
        ],
    )
    record = client.retrieve(name, ids=[5], with_vectors=True)[0]
    assert record.payload == {}  # replaced, not merged
    assert record.vector == {"a": new_a.tolist(), "b": new_b.tolist()}
    # The old vector no longer finds point 5 first; the new one does, with a newer version.
    near_old = client.query_points(name, query=a[5].tolist(), using="a", limit=20).points
    assert near_old[0].id != 5
    assert near_old[-1].id == 5
    new = client.query_points(name, query=new_a.tolist(), using="a", limit=1).points[0]
    assert new.id == 5
    assert new.score == pytest.approx(0.0, abs=1e-6)
    assert new.version > old.version
    assert client.count(name).count == 20
    client.delete_collection(name)


def test_delete_collection(client) -> None:
    name = "search_doomed"
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance="Dot"))
    client.upsert(name, points=[models.PointStruct(id=1, vector=[1.0, 2.0])])
    assert client.collection_exists(name)
    assert client.delete_collection(name) is True
    assert client.collection_exists(name) is False
    assert name not in [c.name for c in client.get_collections().collections]
    with pytest.raises(UnexpectedResponse) as excinfo:
        client.get_collection(name)
    assert excinfo.value.status_code == 404
    # The name can be used again, and starts empty.
    client.create_collection(name, vectors_config=models.VectorParams(size=3, distance="Dot"))
    assert client.count(name).count == 0
    client.delete_collection(name)
