"""Upstash SPARSE and HYBRID indexes: creation (HTTP and CLI), the official SDK (sync and
async, through `call`) on a sparse and a hybrid index, and bad sparse input on the wire.

Expected scores are computed here with numpy from the vectors as stored (float32), then
rounded through float32 as the server sends them:

- sparse: the dot product over shared indices (a point sharing none is not a result); with
  IDF each query value is first multiplied by ln((N - n + 0.5) / (n + 0.5) + 1), N the
  vectors in the namespace and n those having the index;
- hybrid RRF: the sum over the dense and the sparse ranking of 1 / (60 + rank), 0-based;
- hybrid DBSF: per ranking (s - (mean - 3 sd)) / (6 sd) with the sample sd (0.5 for a single
  point or sd = 0), summed.

A repeated index in one sparse vector is merged by summing its values (our documented
choice: the SDK's own tests send `[3, 3]`).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from upstash_vector import AsyncIndex, Index, Vector
from upstash_vector.errors import UpstashError
from upstash_vector.types import (
    DenseIndexInfo,
    FetchResult,
    FusionAlgorithm,
    InfoResult,
    NamespaceInfo,
    QueryResult,
    RangeResult,
    SparseIndexInfo,
    SparseVector,
    WeightingStrategy,
)

TOKEN = "token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[1]
MAX_INDEX = 2**32 - 1

Sparse = dict[int, float]

# As sent: unsorted indices, a repeated index (b: 3 twice), the largest index (a).
SENT: dict[str, tuple[list[int], list[float]]] = {
    "a": ([7, 2, MAX_INDEX], [0.1, 1.5, 2.0]),
    "b": ([9, 3, 3], [0.25, 1.0, 2.0]),
    "c": ([9, 2], [0.3, -1.0]),
    "d": ([100], [1.0]),
    "e": ([9, 7, 3, 2], [3.0, 1.0, 0.75, 0.125]),
}
# As stored (and fetched): sorted, b's two 3s summed. Dict order is insertion order.
STORED: dict[str, Sparse] = {
    "a": {2: 1.5, 7: 0.1, MAX_INDEX: 2.0},
    "b": {3: 3.0, 9: 0.25},
    "c": {2: -1.0, 9: 0.3},
    "d": {100: 1.0},
    "e": {2: 0.125, 3: 0.75, 7: 1.0, 9: 3.0},
}
METADATA = {"a": {"kind": "first"}, "e": {"kind": "last", "n": 5}}
QUERY: Sparse = {9: 2.0, 2: 1.0, 3: 0.5}

# Hybrid points: (dense, sparse). h4 shares no sparse index with HYBRID_SPARSE.
HYBRID: dict[str, tuple[list[float], Sparse]] = {
    "h0": ([1.0, 0.0], {1: 1.0}),
    "h1": ([0.6, 0.8], {1: 0.5, 2: 4.0}),
    "h2": ([0.0, 1.0], {2: 1.0}),
    "h3": ([-0.8, 0.6], {1: 3.0}),
    "h4": ([0.8, -0.6], {5: 1.0}),
}
HYBRID_DENSE = [1.0, 0.2]
HYBRID_SPARSE: Sparse = {1: 1.0, 2: 0.25}


async def call(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def f32(x: float) -> float:
    return float(np.float32(x))


def wire_sparse(vector: Sparse) -> SparseVector:
    return SparseVector(list(vector), list(vector.values()))


def as_fetched(vector: Sparse) -> SparseVector:
    return SparseVector(sorted(vector), [vector[i] for i in sorted(vector)])


def ranked(scores: dict[str, float], order: list[str]) -> list[tuple[str, float]]:
    """Best first after float32 rounding, ties by insertion order."""
    rounded = {pid: f32(s) for pid, s in scores.items()}
    return sorted(rounded.items(), key=lambda item: (-item[1], order.index(item[0])))


def sparse_raw(query: Sparse, points: dict[str, Sparse], idf: bool = False) -> dict[str, float]:
    """Dot products (float64 over the float32 values) of the points sharing an index."""
    n = len(points)
    weights = {}
    for i, value in query.items():
        weight = np.float64(np.float32(value))
        if idf:
            df = sum(i in p for p in points.values())
            weight *= np.log((n - df + 0.5) / (df + 0.5) + 1.0)
        weights[i] = weight
    out = {}
    for pid, point in points.items():
        shared = [i for i in sorted(query) if i in point]
        if shared:
            out[pid] = float(sum(weights[i] * np.float64(np.float32(point[i])) for i in shared))
    return out


def sparse_expected(
    query: Sparse, points: dict[str, Sparse], idf: bool = False
) -> list[tuple[str, float]]:
    return ranked(sparse_raw(query, points, idf), list(points))


def upstash_cosine(a: list[float], b: list[float]) -> float:
    x = np.asarray(a, dtype=np.float32).astype(np.float64)
    y = np.asarray(b, dtype=np.float32).astype(np.float64)
    return (1.0 + x @ y / (np.linalg.norm(x) * np.linalg.norm(y))) / 2.0


def hybrid_lists() -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The dense (Upstash scores) and sparse rankings, best first, unrounded."""
    dense = {pid: upstash_cosine(v, HYBRID_DENSE) for pid, (v, _) in HYBRID.items()}
    sparse = sparse_raw(HYBRID_SPARSE, {pid: s for pid, (_, s) in HYBRID.items()})
    order = list(HYBRID)

    def best_first(scores: dict[str, float]) -> list[tuple[str, float]]:
        return sorted(scores.items(), key=lambda item: (-item[1], order.index(item[0])))

    return best_first(dense), best_first(sparse)


def rrf(lists: list[list[tuple[str, float]]]) -> dict[str, float]:
    fused: dict[str, float] = {}
    for items in lists:
        for rank, (pid, _) in enumerate(items):
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (60 + rank)
    return fused


def dbsf(lists: list[list[tuple[str, float]]]) -> dict[str, float]:
    fused: dict[str, float] = {}
    for items in lists:
        scores = np.array([s for _, s in items])
        sd = float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0
        if sd == 0.0:
            normalised = np.full(len(scores), 0.5)
        else:
            normalised = (scores - (scores.mean() - 3 * sd)) / (6 * sd)
        for (pid, _), value in zip(items, normalised, strict=True):
            fused[pid] = fused.get(pid, 0.0) + float(value)
    return fused


def pairs(results: list[QueryResult]) -> list[tuple[str, float]]:
    return [(r.id, r.score) for r in results]


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base(server_factory) -> str:
    return server_factory(env={"WAYPOINT_API_KEY": TOKEN}).url


def put_index(base: str, name: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(f"{base}/upstash/{name}", json=body, headers=AUTH, timeout=30)


@pytest.fixture(scope="module")
def urls(base: str) -> dict[str, str]:
    bodies = {
        "sparse": {"indexType": "SPARSE"},
        "hybrid": {"indexType": "HYBRID", "dimension": 2},
        "dense": {"dimension": 2},
    }
    for name, body in bodies.items():
        made = put_index(base, name, body)
        assert made.json() == {"result": "Success"}, made.text
    return {name: f"{base}/upstash/{name}" for name in bodies}


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> type[Index] | type[AsyncIndex]:
    return Index if request.param == "sync" else AsyncIndex


@pytest.fixture
def sparse(kind, urls) -> Index | AsyncIndex:
    return kind(url=urls["sparse"], token=TOKEN)


@pytest.fixture
def hybrid(kind, urls) -> Index | AsyncIndex:
    return kind(url=urls["hybrid"], token=TOKEN)


async def seed_sparse(index: Index | AsyncIndex) -> None:
    await call(index.reset(all=True))
    vectors = [
        Vector(id=pid, sparse_vector=SparseVector(*SENT[pid]), metadata=METADATA.get(pid))
        for pid in SENT
    ]
    assert await call(index.upsert(vectors)) == "Success"


async def seed_hybrid(index: Index | AsyncIndex) -> None:
    await call(index.reset(all=True))
    vectors = [
        Vector(id=pid, vector=dense, sparse_vector=wire_sparse(sp))
        for pid, (dense, sp) in HYBRID.items()
    ]
    assert await call(index.upsert(vectors)) == "Success"


# ---------------------------------------------------------------- index types


def test_index_types_and_info(base) -> None:
    for name, body in {
        "t-dense": {"indexType": "DENSE", "dimension": 3},
        "t-sparse": {"indexType": "sparse"},
        "t-hybrid": {"indexType": "HYBRID", "dimension": 4, "similarityFunction": "COSINE"},
    }.items():
        made = put_index(base, name, body)
        assert made.json() == {"result": "Success"}, made.text

    def info(name: str) -> InfoResult:
        return Index(url=f"{base}/upstash/{name}", token=TOKEN).info()

    empty = {"": NamespaceInfo(0, 0)}
    assert info("t-sparse") == InfoResult(
        0, 0, 0, 0, "", None, SparseIndexInfo(embedding_model=""), empty
    )
    assert info("t-hybrid") == InfoResult(
        0, 0, 0, 4, "COSINE", DenseIndexInfo(4, "COSINE", ""), SparseIndexInfo(""), empty
    )
    assert info("t-dense") == InfoResult(
        0, 0, 0, 3, "COSINE", DenseIndexInfo(3, "COSINE", ""), None, empty
    )

    refused = {
        "SPARSE with a dimension": {"indexType": "SPARSE", "dimension": 2},
        "SPARSE with a similarity": {"indexType": "SPARSE", "similarityFunction": "COSINE"},
        "unknown type": {"indexType": "MIXED", "dimension": 2},
        "HYBRID without a dimension": {"indexType": "HYBRID"},
    }
    messages = []
    for what, body in refused.items():
        response = put_index(base, "t-refused", body)
        assert response.status_code == 400, (what, response.text)
        assert response.json()["status"] == 400
        messages.append(response.json()["error"])
    assert messages == [
        "A SPARSE index takes no dimension or similarityFunction",
        "A SPARSE index takes no dimension or similarityFunction",
        "indexType must be DENSE, SPARSE or HYBRID",
        "A HYBRID index needs a dimension or an embeddingModel",
    ]
    assert httpx.post(f"{base}/upstash/t-refused/info", headers=AUTH).status_code == 404


def create_indexes(database_url: str, *commands: list[str]) -> list[tuple[int, str, str]]:
    """Run `python -m app create-index` once per argument list, all at the same time (each
    pays for a Python start); (exit code, stdout, stderr) of each."""
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "create-index", *args],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    return [(p.wait(timeout=120), *p.communicate()) for p in running]


def test_cli_creates_a_sparse_index_and_refuses_a_hybrid_one_without_dimension(
    base, database_url
) -> None:
    """Two runs at once (each pays for a Python start); the other type rules are
    `index_config`'s, checked over HTTP above."""
    sparse, no_dimension = create_indexes(
        database_url, ["cli-sparse", "--type", "SPARSE"], ["cli-bad", "--type", "HYBRID"]
    )
    assert sparse[0] == 0 and "created SPARSE index cli-sparse" in sparse[1], sparse
    assert no_dimension[0] == 1 and "A HYBRID index needs a dimension" in no_dimension[2]
    info = Index(url=f"{base}/upstash/cli-sparse", token=TOKEN).info()
    assert (info.dense_index, info.sparse_index) == (None, SparseIndexInfo(""))
    missing = httpx.post(f"{base}/upstash/cli-bad/info", headers=AUTH)
    assert missing.status_code == 404


# ----------------------------------------------------------------- sparse SDK


async def test_sparse_upsert_fetch_and_range(sparse) -> None:
    await seed_sparse(sparse)
    info = await call(sparse.info())
    assert (info.vector_count, info.dimension, info.dense_index) == (5, 0, None)
    fetched = await call(
        sparse.fetch(["b", "missing", "a"], include_vectors=True, include_metadata=True)
    )
    assert fetched == [
        FetchResult("b", sparse_vector=SparseVector([3, 9], [3.0, 0.25])),
        None,
        FetchResult(
            "a",
            metadata={"kind": "first"},
            sparse_vector=SparseVector([2, 7, MAX_INDEX], [1.5, 0.1, 2.0]),
        ),
    ]
    assert await call(sparse.fetch("c")) == [FetchResult("c")]  # no vectors unless asked
    page = await call(sparse.range(limit=3, include_vectors=True))
    assert page.vectors == [
        FetchResult(pid, sparse_vector=as_fetched(STORED[pid])) for pid in ("a", "b", "c")
    ]
    rest = await call(sparse.range(cursor=page.next_cursor, limit=3, include_vectors=True))
    assert rest == RangeResult(
        "", [FetchResult(pid, sparse_vector=as_fetched(STORED[pid])) for pid in ("d", "e")]
    )


async def test_sparse_query_scores(sparse) -> None:
    await seed_sparse(sparse)
    expected = sparse_expected(QUERY, STORED)
    assert [pid for pid, _ in expected] == ["e", "b", "a", "c"]  # d shares no index
    assert expected[-1][1] < 0  # c: 0.3 * 2 - 1
    results = await call(sparse.query(sparse_vector=wire_sparse(QUERY)))
    assert pairs(results) == expected
    # A tuple works too, and topK cuts.
    top = await call(sparse.query(sparse_vector=(list(QUERY), list(QUERY.values())), top_k=2))
    assert pairs(top) == expected[:2]
    # The fields asked for come along.
    full = await call(
        sparse.query(
            sparse_vector=SparseVector([7], [2.0]), include_vectors=True, include_metadata=True
        )
    )
    assert full == [
        QueryResult("e", 2.0, metadata=METADATA["e"], sparse_vector=as_fetched(STORED["e"])),
        QueryResult(
            "a",
            f32(np.float32(0.1) * 2.0),
            metadata=METADATA["a"],
            sparse_vector=as_fetched(STORED["a"]),
        ),
    ]
    assert await call(sparse.query(sparse_vector=SparseVector([42], [1.0]))) == []
    # A query index repeated is merged like a stored one.
    repeated = await call(sparse.query(sparse_vector=SparseVector([3, 3], [0.25, 0.25])))
    assert pairs(repeated) == sparse_expected({3: 0.5}, STORED)


async def test_sparse_query_with_idf(sparse) -> None:
    await seed_sparse(sparse)
    expected = sparse_expected(QUERY, STORED, idf=True)
    results = await call(
        sparse.query(sparse_vector=wire_sparse(QUERY), weighting_strategy=WeightingStrategy.IDF)
    )
    assert pairs(results) == expected
    # By hand for one point: b has 3 (n = 2 of N = 5) and 9 (n = 3).
    by_hand = 0.5 * np.log(3.5 / 2.5 + 1) * 3.0 + 2.0 * np.log(2.5 / 3.5 + 1) * 0.25
    assert dict(expected)["b"] == f32(by_hand)
    assert dict(expected) != dict(sparse_expected(QUERY, STORED))  # IDF changed something
    rare = {100: 1.0, MAX_INDEX: 1.0, 2: 1.0}
    results = await call(
        sparse.query(sparse_vector=wire_sparse(rare), weighting_strategy=WeightingStrategy.IDF)
    )
    assert pairs(results) == sparse_expected(rare, STORED, idf=True)


async def test_sparse_query_many_and_namespaces(sparse) -> None:
    await seed_sparse(sparse)
    other = {"a": {2: 5.0}, "z": {9: 1.0, 100: 2.0}}
    assert (
        await call(
            sparse.upsert(
                [Vector(id=pid, sparse_vector=wire_sparse(v)) for pid, v in other.items()],
                namespace="other",
            )
        )
        == "Success"
    )
    many = await call(
        sparse.query_many(
            queries=[
                {"sparse_vector": wire_sparse(QUERY), "top_k": 3},
                {"sparse_vector": SparseVector([100], [1.0]), "include_vectors": True},
                {"sparse_vector": wire_sparse(QUERY), "weighting_strategy": WeightingStrategy.IDF},
            ]
        )
    )
    assert [pairs(r) for r in many] == [
        sparse_expected(QUERY, STORED)[:3],
        [("d", 1.0)],
        sparse_expected(QUERY, STORED, idf=True),
    ]
    assert many[1][0].sparse_vector == SparseVector([100], [1.0])
    # "other" has its own points and its own N and n for IDF.
    in_other = await call(sparse.query(sparse_vector=wire_sparse(QUERY), namespace="other"))
    assert pairs(in_other) == sparse_expected(QUERY, other)
    idf_other = await call(
        sparse.query(
            sparse_vector=wire_sparse(QUERY),
            namespace="other",
            weighting_strategy=WeightingStrategy.IDF,
        )
    )
    assert pairs(idf_other) == sparse_expected(QUERY, other, idf=True)
    assert pairs(idf_other) == [
        ("a", f32(np.log(1.5 / 1.5 + 1) * 5.0)),
        ("z", f32(np.log(2) * 2.0)),
    ]
    info = await call(sparse.info())
    assert info.namespaces == {"": NamespaceInfo(5, 0), "other": NamespaceInfo(2, 0)}
    assert await call(sparse.fetch("a", include_vectors=True)) == [
        FetchResult("a", sparse_vector=as_fetched(STORED["a"]))
    ]


async def test_sparse_update_and_delete(sparse) -> None:
    await seed_sparse(sparse)
    assert await call(sparse.update("d", sparse_vector=SparseVector([9, 2], [1.0, 8.0]))) is True
    changed = {**STORED, "d": {2: 8.0, 9: 1.0}}
    results = await call(sparse.query(sparse_vector=wire_sparse(QUERY)))
    assert pairs(results) == sparse_expected(QUERY, changed)
    assert results[0].id == "d"
    assert await call(sparse.fetch("d", include_vectors=True)) == [
        FetchResult("d", sparse_vector=SparseVector([2, 9], [8.0, 1.0]))
    ]
    # Metadata only: the sparse vector stays.
    assert await call(sparse.update("d", metadata={"m": 1})) is True
    assert pairs(await call(sparse.query(sparse_vector=wire_sparse(QUERY)))) == pairs(results)
    with pytest.raises(UpstashError, match="sparse"):
        await call(sparse.update("d", vector=[1.0, 0.0]))

    assert (await call(sparse.delete(["e", "c"]))).deleted == 2
    left = {pid: v for pid, v in changed.items() if pid not in ("e", "c")}
    results = await call(sparse.query(sparse_vector=wire_sparse(QUERY)))
    assert pairs(results) == sparse_expected(QUERY, left)
    idf = await call(
        sparse.query(sparse_vector=wire_sparse(QUERY), weighting_strategy=WeightingStrategy.IDF)
    )
    assert pairs(idf) == sparse_expected(QUERY, left, idf=True)  # N and n follow deletes
    assert (await call(sparse.info())).vector_count == 3


# ----------------------------------------------------------------- hybrid SDK


async def test_hybrid_upsert_needs_both_vectors(hybrid) -> None:
    await seed_hybrid(hybrid)
    for one in (
        Vector(id="x", vector=[1.0, 0.0]),
        Vector(id="x", sparse_vector=SparseVector([1], [1.0])),
    ):
        with pytest.raises(UpstashError, match="hybrid"):
            await call(hybrid.upsert([one]))
    assert (await call(hybrid.info())).vector_count == 5
    dense, sp = HYBRID["h1"]
    assert await call(hybrid.fetch("h1", include_vectors=True)) == [
        FetchResult("h1", vector=dense, sparse_vector=as_fetched(sp))
    ]


async def test_hybrid_rrf(hybrid) -> None:
    await seed_hybrid(hybrid)
    dense, sp = hybrid_lists()
    assert [pid for pid, _ in dense] == ["h0", "h1", "h4", "h2", "h3"]
    assert [pid for pid, _ in sp] == ["h3", "h1", "h0", "h2"]
    expected = ranked(rrf([dense, sp]), list(HYBRID))
    assert dict(expected)["h0"] == f32(1 / 60 + 1 / 62)
    assert dict(expected)["h4"] == f32(1 / 62)  # in the dense list only
    query = {"vector": HYBRID_DENSE, "sparse_vector": wire_sparse(HYBRID_SPARSE)}
    assert pairs(await call(hybrid.query(**query))) == expected
    explicit = await call(hybrid.query(**query, fusion_algorithm=FusionAlgorithm.RRF, top_k=3))
    assert pairs(explicit) == expected[:3]


async def test_hybrid_dbsf(hybrid) -> None:
    await seed_hybrid(hybrid)
    dense, sp = hybrid_lists()
    expected = ranked(dbsf([dense, sp]), list(HYBRID))
    results = await call(
        hybrid.query(
            vector=HYBRID_DENSE,
            sparse_vector=wire_sparse(HYBRID_SPARSE),
            fusion_algorithm=FusionAlgorithm.DBSF,
        )
    )
    assert pairs(results) == expected
    # Affine-invariant: the raw cosines give the same fused scores.
    raw = [(pid, 2 * s - 1) for pid, s in dense]
    assert ranked(dbsf([raw, sp]), list(HYBRID)) == expected


async def test_hybrid_single_vector_queries(hybrid) -> None:
    await seed_hybrid(hybrid)
    dense, sp = hybrid_lists()
    only_dense = await call(hybrid.query(vector=HYBRID_DENSE))
    # The server normalises the float32 vectors before the dot product: a score may be one
    # float32 step from the correctly rounded (1 + cos) / 2 (h3 here), never more.
    expected = ranked(dict(dense), list(HYBRID))
    assert [r.id for r in only_dense] == [pid for pid, _ in expected]
    for result, (_, score) in zip(only_dense, expected, strict=True):
        assert abs(result.score - score) <= np.spacing(np.float32(score)), result
    assert all(0.0 <= r.score <= 1.0 for r in only_dense)
    only_sparse = await call(hybrid.query(sparse_vector=wire_sparse(HYBRID_SPARSE)))
    assert pairs(only_sparse) == ranked(dict(sp), list(HYBRID))
    assert only_sparse[0] == QueryResult("h3", 3.0)


async def test_resumable_sparse_and_hybrid_queries(sparse, hybrid) -> None:
    """A resumable query pages through the same ranking as `query`."""
    await seed_sparse(sparse)
    await seed_hybrid(hybrid)
    scores, handle = await call(sparse.resumable_query(sparse_vector=wire_sparse(QUERY), top_k=2))
    rest = await call(handle.fetch_next(10))
    await call(handle.stop())
    assert pairs(scores + rest) == sparse_expected(QUERY, STORED)
    dense, sp = hybrid_lists()
    for algorithm, fuse in ((FusionAlgorithm.RRF, rrf), (FusionAlgorithm.DBSF, dbsf)):
        scores, handle = await call(
            hybrid.resumable_query(
                vector=HYBRID_DENSE,
                sparse_vector=wire_sparse(HYBRID_SPARSE),
                fusion_algorithm=algorithm,
                top_k=2,
            )
        )
        rest = await call(handle.fetch_next(10))
        await call(handle.stop())
        assert pairs(scores + rest) == ranked(fuse([dense, sp]), list(HYBRID)), algorithm


async def test_hybrid_update_of_both_vectors(hybrid) -> None:
    await seed_hybrid(hybrid)
    new = SparseVector([2], [100.0])
    assert await call(hybrid.update("h4", vector=[0.0, 1.0], sparse_vector=new)) is True
    assert await call(hybrid.fetch("h4", include_vectors=True)) == [
        FetchResult("h4", vector=[0.0, 1.0], sparse_vector=new)
    ]
    top = await call(hybrid.query(sparse_vector=wire_sparse(HYBRID_SPARSE), top_k=1))
    assert top == [QueryResult("h4", 25.0)]


async def test_hybrid_update_takes_both_vectors_or_neither(hybrid) -> None:
    """The Upstash docs (reference/upstash-api.md, Update) require both or neither on a
    hybrid index: one alone is refused and changes nothing."""
    await seed_hybrid(hybrid)
    for change in ({"vector": [0.0, 1.0]}, {"sparse_vector": SparseVector([9], [1.0])}):
        with pytest.raises(UpstashError, match="send both vector and sparseVector"):
            await call(hybrid.update("h4", **change))
    assert await call(hybrid.fetch(["h4"], include_vectors=True)) == [
        FetchResult("h4", vector=HYBRID["h4"][0], sparse_vector=as_fetched(HYBRID["h4"][1]))
    ]
    assert await call(hybrid.update("h4", metadata={"kept": True})) is True


# ------------------------------------------------------------------- bad input


def post(url: str, path: str, body: Any = None, *, raw: str | None = None) -> httpx.Response:
    content = raw if raw is not None else httpx.Request("POST", "/", json=body).content
    return httpx.post(f"{url}{path}", content=content, headers=AUTH, timeout=30)


def refused(url: str, path: str, body: Any = None, *, raw: str | None = None) -> tuple[int, str]:
    response = post(url, path, body, raw=raw)
    payload = response.json()
    assert set(payload) == {"error", "status"}, payload
    assert payload["status"] == response.status_code
    return response.status_code, payload["error"]


def point(sparse: Any) -> dict[str, Any]:
    return {"id": "bad", "sparseVector": sparse}


BAD_SPARSE = {
    "lengths differ": (
        point({"indices": [1, 2], "values": [1.0]}),
        "same length",
    ),
    "negative index": (point({"indices": [-1], "values": [1.0]}), "between 0 and 4294967295"),
    "index above 2^32 - 1": (
        point({"indices": [2**32], "values": [1.0]}),
        "between 0 and 4294967295",
    ),
    "null value": (point({"indices": [1], "values": [None]}), "values must be numbers"),
    "string value": (point({"indices": [1], "values": ["1"]}), "values must be numbers"),
    "float index": (point({"indices": [1.5], "values": [1.0]}), "indices must be integers"),
    "string index": (point({"indices": ["1"], "values": [1.0]}), "indices must be integers"),
    "a list": (point([[1], [1.0]]), "sparseVector must be"),
    "no values": (point({"indices": [1]}), "sparseVector must be"),
    "dense vector": ({"id": "bad", "vector": [1.0, 0.0]}, "sparse"),
    "no vector": ({"id": "bad"}, "sparseVector is required"),
}


@pytest.mark.parametrize("case", list(BAD_SPARSE))
def test_bad_sparse_upserts_write_nothing(urls, case: str) -> None:
    url = urls["sparse"]
    good = {"id": "good", "sparseVector": {"indices": [1], "values": [1.0]}}
    before = Index(url=url, token=TOKEN).info().vector_count
    body, message = BAD_SPARSE[case]
    for sent in (body, [good, body]):  # alone, and after a good point in one batch
        status, error = refused(url, "/upsert", sent)
        assert status == 400 and message in error, (status, error)
    if "sparseVector" in body or "vector" in body:  # an update may send no vector at all
        status, error = refused(url, "/update", {**body, "id": "a"})
        assert status == 400 and message in error, (status, error)
    assert Index(url=url, token=TOKEN).info().vector_count == before
    assert Index(url=url, token=TOKEN).fetch("good") == [None]


def test_nan_and_infinity_are_refused(urls) -> None:
    url = urls["sparse"]
    before = Index(url=url, token=TOKEN).info().vector_count
    for text in ("NaN", "Infinity", "-Infinity"):
        raw = '{"id": "bad", "sparseVector": {"indices": [1], "values": [V]}}'.replace("V", text)
        status, error = refused(url, "/upsert", raw=raw)
        # Not JSON: refused by the decoder, which points at the byte (NaN is not named).
        assert status == 400 and "Format error in JSON body: JSON is malformed" in error, error
        query = '{"sparseVector": {"indices": [1], "values": [V]}}'.replace("V", text)
        assert refused(url, "/query", raw=query)[0] == 400
    # Too large for float32 is refused too, not stored as infinity.
    status, error = refused(url, "/upsert", point({"indices": [1], "values": [1e39]}))
    assert status == 400 and "finite 32-bit" in error, error
    assert Index(url=url, token=TOKEN).info().vector_count == before


def test_wrong_kind_of_vector_and_bad_options(urls) -> None:
    sparse_body = {"indices": [1], "values": [1.0]}
    dense_url, hybrid_url, sparse_url = urls["dense"], urls["hybrid"], urls["sparse"]
    counts = {url: Index(url=url, token=TOKEN).info().vector_count for url in urls.values()}
    both = {"id": "bad", "vector": [1.0, 0.0], "sparseVector": sparse_body}
    assert refused(dense_url, "/upsert", both) == (
        400,
        "This index is dense: sparse vectors are not supported",
    )
    assert refused(dense_url, "/query", {"sparseVector": sparse_body})[0] == 400
    assert refused(sparse_url, "/upsert", both) == (
        400,
        "This index is sparse: send sparseVector, not vector",
    )
    assert refused(sparse_url, "/query", {"vector": [1.0, 0.0]})[0] == 400
    for only in ({"id": "bad", "vector": [1.0, 0.0]}, {"id": "bad", "sparseVector": sparse_body}):
        assert refused(hybrid_url, "/upsert", only) == (
            400,
            "This index is hybrid: send both vector and sparseVector",
        )
    assert refused(
        sparse_url, "/query", {"sparseVector": sparse_body, "weightingStrategy": "BM25"}
    ) == (
        400,
        "weightingStrategy must be IDF",
    )
    fused = {"vector": [1.0, 0.0], "sparseVector": sparse_body, "fusionAlgorithm": "MAX"}
    assert refused(hybrid_url, "/query", fused) == (400, "fusionAlgorithm must be RRF or DBSF")
    bad_sparse = {"vector": [1.0, 0.0], "sparseVector": {"indices": [-3], "values": [1.0]}}
    status, error = refused(hybrid_url, "/query", bad_sparse)
    assert status == 400 and "between 0 and 4294967295" in error
    assert {url: Index(url=url, token=TOKEN).info().vector_count for url in urls.values()} == counts
