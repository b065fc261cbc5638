"""Sparse vectors and hybrid queries through the official client against local mode (the
oracle): qdrant-client 1.20 over REST to a live Waypoint server, and the same calls to
`QdrantClient(":memory:")`, every answer compared - ids and order, scores (1e-5 relative),
payloads and returned vectors (a sparse vector comes back as `models.SparseVector`, its
indices sorted ascending). Sparse scoring is exact, so the two must agree point for point;
only exact score ties may come in another order (compared as sets, see `assert_same_hits`).

`sp_corpus` (read only) has 160 points with a dense vector `dense` (8, Cosine), a sparse
`text` (signed values, no modifier) and a sparse `bm` (positive values, `Modifier.IDF`);
some points lack one or two of them. Each sparse vector has 1..12 non-zeros over 50
dimensions drawn unevenly (dimension 0 is common, 49 rare), written with its indices in
random order. Tests that write use a collection named after themselves; `sp_small` serves
the refused requests, which must leave it as it was.

Local mode is the reference where it matches the server; where it does not, the test avoids
the case and says so: IDF over deleted points or empty sparse vectors (local mode counts live
points that have the vector, the server its sparse index), a dense and a sparse vector under
one name (local mode accepts it, the server refuses), recommend on an IDF vector (unclear on
the server), DBSF over Euclid (local mode orders farthest first, qdrant #10611).

`WAYPOINT_SPARSE_SELF_CHECK=1` runs every test with local mode on both sides (no server; the
raw HTTP tests are skipped): a check of the oracle side after a qdrant-client upgrade.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
from qdrant_client.local.qdrant_local import QdrantLocal

from tests.qdrant_oracle import clients, payload, random_filter

SELF_CHECK = os.environ.get("WAYPOINT_SPARSE_SELF_CHECK") == "1"
N, DIM, VOCAB = 160, 8, 50
RTOL, ATOL = 1e-5, 1e-6
CORPUS, SMALL = "sp_corpus", "sp_small"
SPARSE_NAMES = ("text", "bm")
ZIPF = 1 / (np.arange(VOCAB) + 4)
ZIPF /= ZIPF.sum()
S = models.SparseVector
Pair = tuple[QdrantClient, QdrantClient]


# ------------------------------------------------------------------------------- data


def sparse(rng: np.random.Generator, signed: bool, nnz: tuple[int, int] = (1, 13)) -> S:
    """1..12 non-zeros, dimensions in random (unsorted) order, float32-exact values."""
    dims = rng.choice(VOCAB, size=int(rng.integers(*nnz)), replace=False, p=ZIPF)
    values = rng.normal(size=len(dims)) if signed else rng.uniform(0.1, 2.0, size=len(dims))
    return S(indices=dims.tolist(), values=values.astype(np.float32).tolist())


def dense(rng: np.random.Generator) -> list[float]:
    return rng.standard_normal(DIM).astype(np.float32).tolist()


def sorted_sparse(vector: S) -> S:
    order = np.argsort(vector.indices, kind="stable")
    return S(indices=[vector.indices[i] for i in order], values=[vector.values[i] for i in order])


@dataclass
class Corpus:
    vectors: list[dict[str, Any]]  # per point: the vectors it has
    payloads: list[dict[str, Any]]

    def having(self, name: str) -> dict[int, Any]:
        return {i: v[name] for i, v in enumerate(self.vectors) if name in v}


def corpus_points(seed: int = 7) -> Corpus:
    rng = np.random.default_rng(seed)
    vectors, payloads = [], []
    for i in range(N):
        point = {"dense": dense(rng), "text": sparse(rng, True), "bm": sparse(rng, False)}
        for name, modulus, rest in (("dense", 9, 4), ("text", 7, 3), ("bm", 11, 5)):
            if i % modulus == rest:
                del point[name]
        vectors.append(point)
        payloads.append(payload(i, rng))
    return Corpus(vectors, payloads)


def corpus_config() -> dict[str, Any]:
    return {
        "vectors_config": {"dense": models.VectorParams(size=DIM, distance="Cosine")},
        "sparse_vectors_config": {
            "text": models.SparseVectorParams(),
            "bm": models.SparseVectorParams(modifier=models.Modifier.IDF),
        },
    }


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pair(request) -> Pair:
    """(remote, local); in the self check, local mode twice."""
    if SELF_CHECK:
        yield QdrantClient(":memory:"), QdrantClient(":memory:")
        return
    remote, local = clients(request.getfixturevalue("server").url)
    yield remote, local
    remote.close()


@pytest.fixture(scope="module")
def corpus(pair) -> Corpus:
    data = corpus_points()
    points = [
        models.PointStruct(id=i, vector=v, payload=p)
        for i, (v, p) in enumerate(zip(data.vectors, data.payloads, strict=True))
    ]
    for client in pair:
        client.create_collection(CORPUS, **corpus_config())
        for start in range(0, N, 64):
            client.upsert(CORPUS, points=points[start : start + 64], wait=True)
    return data


@pytest.fixture(scope="module")
def small(pair) -> str:
    points = [
        models.PointStruct(id=1, vector={"dense": [1.0] * DIM, "text": S(indices=[1], values=[1])}),
        models.PointStruct(id=2, vector={"text": S(indices=[2, 1], values=[0.5, 2.0])}),
    ]
    for client in pair:
        client.create_collection(SMALL, **corpus_config())
        client.upsert(SMALL, points=points, wait=True)
    return SMALL


@pytest.fixture
def fresh(pair, request) -> str:
    """A collection name of this test's own (created by the test)."""
    return "sp_" + re.sub(r"[^A-Za-z0-9]+", "_", request.node.name.removeprefix("test_"))


@pytest.fixture(scope="module")
def http(request):
    if SELF_CHECK:
        pytest.skip("raw HTTP needs the live server")
    with httpx.Client(base_url=request.getfixturevalue("server").url, timeout=30) as client:
        yield client


# ------------------------------------------------------------------------- comparison


def is_local(client: QdrantClient) -> bool:
    return isinstance(client._client, QdrantLocal)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= ATOL + RTOL * abs(b)


def assert_same_sparse(got: Any, want: S, where: str = "") -> None:
    """Indices exactly, values within 1e-5: the server writes a float32 in its shortest
    form (1.8014208), which reads back a little off the double it came from."""
    assert isinstance(got, S), f"{where}: {got!r}"
    assert got.indices == want.indices, f"{where}: {got} != {want}"
    np.testing.assert_allclose(got.values, want.values, rtol=RTOL, atol=ATOL, err_msg=where)


def assert_same_vectors(got: Any, want: Any, where: str) -> None:
    """Named vectors: the same names; sparse ones index for index, values within 1e-5."""
    if want is None or isinstance(want, list):
        assert (got is None) == (want is None), f"{where}: {got} != {want}"
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=where)
        return
    assert isinstance(got, dict), f"{where}: {got!r} != {want!r}"
    assert set(got) == set(want), f"{where}: {sorted(got)} != {sorted(want)}"
    for name, vector in want.items():
        if isinstance(vector, S):
            assert_same_sparse(got[name], vector, f"{where}: {name}")
        else:
            np.testing.assert_allclose(got[name], vector, rtol=RTOL, atol=ATOL, err_msg=where)


def assert_same_records(got: Sequence[Any], want: Sequence[Any], where: str) -> None:
    """Records (retrieve, scroll) in the same order with the same payloads and vectors."""
    assert [r.id for r in got] == [r.id for r in want], where
    for a, b in zip(got, want, strict=True):
        assert a.payload == b.payload, f"{where}: point {b.id}"
        assert_same_vectors(a.vector, b.vector, f"{where}: point {b.id}")


def tie_groups(points: Sequence[Any]) -> list[range]:
    """Runs of positions whose scores are equal within the tolerance."""
    groups: list[range] = []
    start = 0
    for i in range(1, len(points) + 1):
        if i == len(points) or not close(points[i].score, points[i - 1].score):
            groups.append(range(start, i))
            start = i
    return groups


def assert_same_hits(
    got: Sequence[Any], want: Sequence[Any], where: str, everything: Sequence[Any] = ()
) -> None:
    """Scores position by position; ids too, except that tied ids may come in any order and
    a tie cut by the limit or the offset may keep other members of the tie (`everything` is
    the local answer without the cut). Payloads and vectors as local mode has them."""
    assert len(got) == len(want), f"{where}: {[p.id for p in got]} != {[p.id for p in want]}"
    assert len({p.id for p in got}) == len(got), f"{where}: repeated ids"
    np.testing.assert_allclose(
        [p.score for p in got], [p.score for p in want], rtol=RTOL, atol=ATOL, err_msg=where
    )
    for group in tie_groups(want):
        got_ids, want_ids = {got[i].id for i in group}, {want[i].id for i in group}
        if got_ids == want_ids:
            continue
        edge = group[0] == 0 or group[-1] == len(want) - 1
        score = want[group[0]].score
        tied = {p.id for p in everything if close(p.score, score)}
        assert edge and got_ids <= tied, f"{where}: at {score}: {got_ids} != {want_ids}"
    reference = {p.id: p for p in [*everything, *want]}
    for point in got:
        assert point.payload == reference[point.id].payload, f"{where}: point {point.id}"
        assert_same_vectors(point.vector, reference[point.id].vector, f"{where}: {point.id}")


def same_query(pair: Pair, collection: str, where: str = "", **kwargs: Any) -> list[Any]:
    """`query_points` on both sides (the server first: local mode sorts some inputs in
    place); returns local mode's points."""
    remote, local = pair
    got = remote.query_points(collection, **kwargs).points
    want = local.query_points(collection, **kwargs).points
    everything: list[Any] = []
    if [p.id for p in got] != [p.id for p in want]:
        whole = {**kwargs, "limit": 10_000, "offset": 0}
        everything = local.query_points(collection, **whole).points
    assert_same_hits(got, want, where or repr(kwargs), everything)
    return want


def between(scores: Sequence[float], fraction: float) -> float | None:
    """A threshold halfway between two neighbouring distinct scores, never equal to one."""
    distinct = sorted(set(scores), reverse=True)
    if len(distinct) < 2:
        return None
    k = min(int(fraction * (len(distinct) - 1)), len(distinct) - 2)
    return (distinct[k] + distinct[k + 1]) / 2


def assert_refused(client: QdrantClient, call: Callable[[], Any], where: str) -> None:
    """The server answers 400 or 422; local mode raises before writing anything."""
    if is_local(client):
        with pytest.raises((ValueError, KeyError, TypeError)):
            call()
        return
    with pytest.raises(UnexpectedResponse) as caught:
        call()
    assert caught.value.status_code in (400, 422), (where, caught.value)


def assert_unchanged(pair: Pair, collection: str) -> None:
    remote, local = pair
    options = {"limit": 100, "with_vectors": True}
    assert_same_records(
        remote.scroll(collection, **options)[0], local.scroll(collection, **options)[0], collection
    )


# ------------------------------------------------------------------------- collections


def sparse_config(client: QdrantClient, collection: str) -> dict[str, Any]:
    params = client.get_collection(collection).config.params
    return {k: v.model_dump(exclude_none=True) for k, v in params.sparse_vectors.items()}


def test_create_collection_echoes_sparse_vectors(pair, corpus) -> None:
    """Mixed dense + sparse, and sparse only (no `vectors_config` at all)."""
    remote, local = pair
    for client in pair:
        client.create_collection(
            "sp_only_sparse", sparse_vectors_config={"s": models.SparseVectorParams()}
        )
    expected = {"text": {}, "bm": {"modifier": "idf"}}
    assert sparse_config(remote, CORPUS) == sparse_config(local, CORPUS) == expected
    assert sparse_config(remote, "sp_only_sparse") == sparse_config(local, "sp_only_sparse")
    assert remote.get_collection("sp_only_sparse").config.params.vectors in ({}, None)
    vectors = remote.get_collection(CORPUS).config.params.vectors
    assert vectors["dense"].size == DIM
    assert vectors["dense"].distance == models.Distance.COSINE
    assert set(vectors) == {"dense"}


def test_get_collection_json_has_sparse_vectors(http, corpus) -> None:
    """The raw shape: a sparse vector without a modifier is `{}` (no nulls)."""
    params = http.get(f"/collections/{CORPUS}").json()["result"]["config"]["params"]
    assert params["sparse_vectors"] == {"text": {}, "bm": {"modifier": "idf"}}


def test_update_collection_changes_the_modifier(pair, fresh) -> None:
    """Scores follow the modifier at once: IDF after the first update, raw dot products
    again after `Modifier.NONE` (echoed as "none")."""
    data = corpus_points(seed=8)
    points = [
        models.PointStruct(id=i, vector={"text": v["bm"]})
        for i, v in enumerate(data.vectors)
        if "bm" in v
    ]
    for client in pair:
        client.create_collection(fresh, sparse_vectors_config={"text": models.SparseVectorParams()})
        client.upsert(fresh, points=points, wait=True)
    query = S(indices=[0, 7, 30], values=[1.0, 0.5, 2.0])
    plain = same_query(pair, fresh, query=query, using="text", limit=15)
    for modifier in (models.Modifier.IDF, models.Modifier.NONE):
        for client in pair:
            change = {"text": models.SparseVectorParams(modifier=modifier)}
            assert client.update_collection(fresh, sparse_vectors_config=change)
        assert sparse_config(pair[0], fresh) == sparse_config(pair[1], fresh)
        assert sparse_config(pair[0], fresh) == {"text": {"modifier": modifier.value}}
        scored = same_query(pair, fresh, query=query, using="text", limit=15)
        assert ([p.score for p in scored] == [p.score for p in plain]) == (modifier == "none")


# ----------------------------------------------------------------------------- upserts


def test_upsert_points_with_sparse_dense_or_both(pair, fresh) -> None:
    """PointStruct form; unsorted indices come back sorted, values moved along."""
    rng = np.random.default_rng(1)
    vectors = [
        {"text": S(indices=[9, 2, 40], values=[0.5, -1.25, 3.0])},
        {"dense": dense(rng)},
        {"dense": dense(rng), "text": sparse(rng, True), "bm": sparse(rng, False)},
        {"bm": S(indices=[3], values=[2.0])},
    ]
    points = [models.PointStruct(id=i, vector=v, payload={"i": i}) for i, v in enumerate(vectors)]
    for client in pair:
        client.create_collection(fresh, **corpus_config())
        client.upsert(fresh, points=points, wait=True)
    got = pair[0].retrieve(fresh, ids=[0, 1, 2, 3], with_vectors=True)
    want = pair[1].retrieve(fresh, ids=[0, 1, 2, 3], with_vectors=True)
    assert_same_records(got, want, "retrieve")
    assert got[0].vector["text"] == S(indices=[2, 9, 40], values=[-1.25, 0.5, 3.0])
    for name in ("text", "bm"):
        assert_same_sparse(got[2].vector[name], sorted_sparse(vectors[2][name]), name)


def test_upsert_batch_with_a_sparse_column(pair, fresh) -> None:
    rng = np.random.default_rng(2)
    batch = models.Batch(
        ids=[10, 11, 12],
        vectors={
            "dense": [dense(rng) for _ in range(3)],
            "text": [sparse(rng, True) for _ in range(3)],
        },
        payloads=[{"k": k} for k in range(3)],
    )
    for client in pair:
        client.create_collection(fresh, **corpus_config())
        client.upsert(fresh, points=batch, wait=True)
    got = pair[0].scroll(fresh, with_vectors=True)[0]
    assert_same_records(got, pair[1].scroll(fresh, with_vectors=True)[0], "scroll")
    for point, vector in zip(got, batch.vectors["text"], strict=True):
        assert_same_sparse(point.vector["text"], sorted_sparse(vector), f"point {point.id}")


def test_upsert_replaces_a_sparse_vector_and_drops_an_omitted_one(pair, fresh) -> None:
    """An upsert writes the whole point: a vector it does not name is gone afterwards."""
    first = {"dense": [0.5] * DIM, "text": S(indices=[1, 2], values=[1.0, 1.0])}
    second = {"text": S(indices=[5], values=[2.0])}
    for client in pair:
        client.create_collection(fresh, **corpus_config())
        client.upsert(fresh, points=[models.PointStruct(id=1, vector=first)], wait=True)
        client.upsert(fresh, points=[models.PointStruct(id=1, vector=second)], wait=True)
    got, want = (c.retrieve(fresh, ids=[1], with_vectors=True) for c in pair)
    assert_same_records(got, want, "after the second upsert")
    assert set(got[0].vector) == {"text"}
    same_query(pair, fresh, query=S(indices=[1, 5], values=[1.0, 1.0]), using="text")


# ----------------------------------------------------------------- reading and editing


@pytest.mark.parametrize("with_vectors", [True, False, ["text"], ["bm", "dense"]], ids=str)
def test_retrieve_and_scroll_select_vectors(pair, corpus, with_vectors) -> None:
    remote, local = pair
    ids = [0, 3, 4, 5, 13, 17, 31, 59, 77, 150]
    got = sorted(remote.retrieve(CORPUS, ids=ids, with_vectors=with_vectors), key=lambda r: r.id)
    want = sorted(local.retrieve(CORPUS, ids=ids, with_vectors=with_vectors), key=lambda r: r.id)
    assert_same_records(got, want, f"retrieve {with_vectors}")
    offset = 0
    while offset is not None:
        page = {"limit": 45, "offset": offset, "with_vectors": with_vectors}
        got, got_next = remote.scroll(CORPUS, **page)
        want, offset = local.scroll(CORPUS, **page)
        assert_same_records(got, want, f"scroll {page}")
        assert got_next == offset


def test_has_vector_filters_scroll_and_count(pair, corpus) -> None:
    remote, local = pair
    rng = np.random.default_rng(3)
    filters = [
        models.Filter(must=[models.HasVectorCondition(has_vector="text")]),
        models.Filter(must_not=[models.HasVectorCondition(has_vector="bm")]),
        models.Filter(
            must=[models.HasVectorCondition(has_vector="dense")],
            must_not=[models.HasVectorCondition(has_vector="text")],
        ),
        models.Filter(should=[models.HasVectorCondition(has_vector="bm"), random_filter(rng)]),
    ]
    for condition in filters:
        got = remote.scroll(CORPUS, scroll_filter=condition, limit=N, with_vectors=["text"])[0]
        want = local.scroll(CORPUS, scroll_filter=condition, limit=N, with_vectors=["text"])[0]
        assert_same_records(got, want, str(condition))
        assert remote.count(CORPUS, count_filter=condition).count == len(want) > 0
    assert local.count(CORPUS, count_filter=filters[0]).count == len(corpus.having("text"))


def test_update_and_delete_sparse_vectors(pair, fresh) -> None:
    """`update_vectors` adds a sparse vector to a dense-only point (3) and replaces one (5);
    `delete_vectors` removes three: reads, has_vector and sparse queries all follow."""
    data = corpus_points(seed=9)
    points = [models.PointStruct(id=i, vector=v) for i, v in enumerate(data.vectors[:40])]
    updates = [
        models.PointVectors(id=3, vector={"text": S(indices=[6, 0], values=[1.5, 0.25])}),
        models.PointVectors(id=5, vector={"text": S(indices=[0, 1], values=[-1.0, 2.0])}),
    ]
    for client in pair:
        client.create_collection(fresh, **corpus_config())
        client.upsert(fresh, points=points, wait=True)
        client.update_vectors(fresh, points=updates, wait=True)
        client.delete_vectors(fresh, vectors=["text"], points=[6, 7, 8], wait=True)
    has_text = models.Filter(must=[models.HasVectorCondition(has_vector="text")])
    got, want = (
        c.scroll(fresh, scroll_filter=has_text, limit=50, with_vectors=True)[0] for c in pair
    )
    assert_same_records(got, want, "has_vector text")
    assert {3, 5} <= {p.id for p in got} and not {6, 7, 8} & {p.id for p in got}
    assert pair[0].count(fresh, count_filter=has_text).count == len(want)
    got, want = (c.retrieve(fresh, ids=[3, 5, 6], with_vectors=True) for c in pair)
    assert_same_records(
        sorted(got, key=lambda r: r.id), sorted(want, key=lambda r: r.id), "retrieve"
    )
    found = same_query(
        pair, fresh, query=S(indices=[0, 6], values=[1.0, 1.0]), using="text", limit=40
    )
    assert {3, 5} <= {p.id for p in found}


def test_empty_sparse_vector_is_stored_but_never_found(pair, fresh) -> None:
    """An empty sparse vector is a vector (retrieve, has_vector) that no query reaches."""
    points = [
        models.PointStruct(id=1, vector={"text": S(indices=[], values=[])}),
        models.PointStruct(id=2, vector={"text": S(indices=[3], values=[1.0])}),
    ]
    for client in pair:
        client.create_collection(fresh, **corpus_config())
        client.upsert(fresh, points=points, wait=True)
    got, want = (c.retrieve(fresh, ids=[1], with_vectors=True) for c in pair)
    assert_same_records(got, want, "retrieve")
    assert got[0].vector == {"text": S(indices=[], values=[])}
    has_text = models.Filter(must=[models.HasVectorCondition(has_vector="text")])
    assert pair[0].count(fresh, count_filter=has_text).count == 2
    found = same_query(pair, fresh, query=S(indices=[3, 4], values=[1.0, 1.0]), using="text")
    assert [p.id for p in found] == [2]


# ------------------------------------------------------------------------ sparse search


def sparse_query(rng: np.random.Generator, name: str) -> S:
    """1..5 dimensions; now and then one that no point has."""
    query = sparse(rng, signed=name == "text", nnz=(1, 6))
    if rng.random() < 0.2:
        return S(indices=[*query.indices, 10_000], values=[*query.values, 1.0])
    return query


def random_search(rng: np.random.Generator, name: str) -> dict[str, Any]:
    return {
        "query": sparse_query(rng, name),
        "using": name,
        "query_filter": random_filter(rng),
        "limit": int(rng.integers(1, 25)),
        "offset": int(rng.integers(0, 6)) if rng.random() < 0.3 else 0,
        "with_payload": [True, False, ["city", "rank"]][int(rng.integers(3))],
        "with_vectors": [False, True, [name]][int(rng.integers(3))],
    }


@pytest.mark.parametrize("name", SPARSE_NAMES)
def test_sparse_query_matches_local_mode(pair, corpus, name) -> None:
    """Limits, offsets, filters, payload and vector selections; a third of the cases with a
    score threshold between two scores local mode returns."""
    rng = np.random.default_rng(11 if name == "text" else 12)
    answered = 0
    for case in range(60):
        args = random_search(rng, name)
        if case % 3 == 0:
            scores = [p.score for p in pair[1].query_points(CORPUS, **args).points]
            args["score_threshold"] = between(scores, rng.random())
        answered += bool(same_query(pair, CORPUS, f"case {case}: {args}", **args))
    assert answered > 40


def test_points_sharing_no_dimension_are_not_returned(pair, corpus) -> None:
    """Only points with a non-zero on a query dimension score, even with room to spare; a
    dot product of zero on shared dimensions still counts."""
    for dims in ([49], [48, 10_000], [0], [10_000]):
        query = S(indices=dims, values=[1.0] * len(dims))
        found = same_query(pair, CORPUS, query=query, using="text", limit=N)
        sharing = {i for i, v in corpus.having("text").items() if set(v.indices) & set(dims)}
        assert {p.id for p in found} == sharing
    points = [
        models.PointStruct(id=1, vector={"text": S(indices=[1, 2], values=[1.0, 1.0])}),
        models.PointStruct(id=2, vector={"text": S(indices=[3], values=[1.0])}),
    ]
    for client in pair:
        client.create_collection("sp_cancel", **corpus_config())
        client.upsert("sp_cancel", points=points, wait=True)
    query = S(indices=[1, 2, 4], values=[1.0, -1.0, 5.0])
    found = same_query(pair, "sp_cancel", query=query, using="text")
    assert [(p.id, p.score) for p in found] == [(1, 0.0)]


def idf_scores(corpus: Corpus, query: S) -> dict[int, float]:
    """By hand: sum of q * v * ln((n - df + 0.5) / (df + 0.5) + 1) over shared dimensions,
    n the points that have the vector, df those among them with a non-zero there."""
    stored = corpus.having("bm")
    n = len(stored)
    df = Counter(i for v in stored.values() for i in v.indices)
    idf = {i: math.log((n - d + 0.5) / (d + 0.5) + 1) for i, d in df.items()}
    weight = dict(zip(query.indices, query.values, strict=True))
    scores = {}
    for pid, vector in stored.items():
        shared = [(i, x) for i, x in zip(vector.indices, vector.values, strict=True) if i in weight]
        if shared:
            scores[pid] = sum(weight[i] * x * idf[i] for i, x in shared)
    return scores


def test_idf_scores_follow_document_frequencies(pair, corpus) -> None:
    rng = np.random.default_rng(13)
    for _ in range(10):
        query = sparse_query(rng, "bm")
        found = same_query(pair, CORPUS, query=query, using="bm", limit=N)
        expected = idf_scores(corpus, query)
        assert {p.id for p in found} == set(expected)
        for point in found:
            assert close(point.score, expected[point.id]), (point, expected[point.id])


@pytest.mark.parametrize("name", SPARSE_NAMES)
def test_query_by_point_id_uses_its_stored_sparse_vector(pair, corpus, name) -> None:
    """The point itself is left out; IDF applies to the stored vector as to any query."""
    for pid in list(corpus.having(name))[:8]:
        found = same_query(pair, CORPUS, query=pid, using=name, limit=12, with_payload=False)
        assert pid not in {p.id for p in found}
        nearest = models.NearestQuery(nearest=pid)
        same_query(pair, CORPUS, query=nearest, using=name, limit=5, offset=2)


def example(rng: np.random.Generator, corpus: Corpus) -> int | S:
    if rng.random() < 0.5:
        return int(rng.choice(list(corpus.having("text"))))
    return sparse(rng, signed=True, nnz=(1, 6))


def test_sparse_recommend_matches_local_mode(pair, corpus) -> None:
    """Every strategy on `text`, ids and raw sparse vectors as examples. The scoring
    strategies score every point that has the vector: one sharing no dimension with any
    example has similarity 0 (best_score: -sigmoid(0) = -0.5 with negatives)."""
    rng = np.random.default_rng(14)
    strategies = (None, "average_vector", "best_score", "sum_scores")
    for case in range(48):
        strategy = strategies[case % 4]
        scoring = strategy in ("best_score", "sum_scores")
        positive = [example(rng, corpus) for _ in range(int(rng.integers(0 if scoring else 1, 3)))]
        negative = [example(rng, corpus) for _ in range(int(rng.integers(0 if positive else 1, 3)))]
        recommend = models.RecommendInput(positive=positive, negative=negative, strategy=strategy)
        args = {
            "query": models.RecommendQuery(recommend=recommend),
            "using": "text",
            "limit": int(rng.integers(1, 15)),
            "query_filter": random_filter(rng),
            "with_payload": bool(case % 2),
        }
        same_query(pair, CORPUS, f"case {case}: {args}", **args)


def test_legacy_recommend_on_a_sparse_vector(pair, corpus, http) -> None:
    """`points/recommend` and `points/recommend/batch` with `using` a sparse name: examples
    are ids or `{"indices", "values"}`; the same answers as the query API in local mode
    (`best_score` ties a lot: a tie cut by the limit compares as in `same_query`)."""
    rng = np.random.default_rng(20)
    bodies, expected, everything = [], [], []
    for case, strategy in enumerate(["average_vector", "best_score", "sum_scores"] * 2):
        positive = [example(rng, corpus) for _ in range(2)]
        negative = [example(rng, corpus) for _ in range(case % 2)]
        recommend = models.RecommendInput(positive=positive, negative=negative, strategy=strategy)
        query = models.RecommendQuery(recommend=recommend)
        options = {"limit": 6, "offset": case % 2, "with_payload": True}
        expected.append(pair[1].query_points(CORPUS, query=query, using="text", **options).points)
        whole = {**options, "limit": N, "offset": 0}
        everything.append(pair[1].query_points(CORPUS, query=query, using="text", **whole).points)
        both = (positive, negative)
        wire = [[e.model_dump() if isinstance(e, S) else e for e in x] for x in both]
        body = {"positive": wire[0], "negative": wire[1], "strategy": strategy, "using": "text"}
        bodies.append({**body, **options})
    batch = http.post(f"/collections/{CORPUS}/points/recommend/batch", json={"searches": bodies})
    assert batch.status_code == 200, batch.text
    for case, body in enumerate(bodies):
        single = http.post(f"/collections/{CORPUS}/points/recommend", json=body)
        assert single.status_code == 200, single.text
        for result in (single.json()["result"], batch.json()["result"][case]):
            got = [models.ScoredPoint(**p) for p in result]
            assert_same_hits(got, expected[case], f"case {case}: {body}", everything[case])


def assert_same_groups(got: Any, want: Any, where: str) -> None:
    assert [g.id for g in got.groups] == [g.id for g in want.groups], where
    for a, b in zip(got.groups, want.groups, strict=True):
        assert_same_hits(a.hits, b.hits, f"{where}, group {b.id}")


@pytest.mark.parametrize("group_by", ["city", "rank"])
def test_sparse_query_groups_match_local_mode(pair, corpus, group_by) -> None:
    rng = np.random.default_rng(15)
    for case in range(12):
        name = SPARSE_NAMES[case % 2]
        args = {
            "group_by": group_by,
            "query": sparse_query(rng, name),
            "using": name,
            "limit": int(rng.integers(1, 6)),
            "group_size": int(rng.integers(1, 4)),
            "with_vectors": [name] if case % 3 == 0 else False,
        }
        got = pair[0].query_points_groups(CORPUS, **args)
        want = pair[1].query_points_groups(CORPUS, **args)
        assert_same_groups(got, want, f"case {case}: {args}")


def test_legacy_search_with_a_named_sparse_vector(pair, corpus, http) -> None:
    """`points/search` and `points/search/batch` (clients <= 1.15; 1.20 dropped the models):
    the vector is `{"name": ..., "vector": {"indices": ..., "values": ...}}`."""
    rng = np.random.default_rng(16)
    bodies, expected = [], []
    for case in range(6):
        name = SPARSE_NAMES[case % 2]
        query = sparse_query(rng, name)
        bodies.append(
            {
                "vector": {"name": name, "vector": query.model_dump()},
                "limit": 7,
                "offset": case % 3,
                "with_payload": bool(case % 2),
                "with_vector": [name] if case % 3 == 0 else False,
            }
        )
        options = {"limit": 7, "offset": case % 3, "with_payload": bool(case % 2)}
        options["with_vectors"] = bodies[-1]["with_vector"]
        expected.append(pair[1].query_points(CORPUS, query=query, using=name, **options).points)
    batch = http.post(f"/collections/{CORPUS}/points/search/batch", json={"searches": bodies})
    assert batch.status_code == 200, batch.text
    for case, body in enumerate(bodies):
        single = http.post(f"/collections/{CORPUS}/points/search", json=body)
        assert single.status_code == 200, single.text
        for result in (single.json()["result"], batch.json()["result"][case]):
            got = [models.ScoredPoint(**p) for p in result]
            assert_same_hits(got, expected[case], f"case {case}: {body}")


# ------------------------------------------------------------------------------ hybrid


def dense_prefetch(rng: np.random.Generator, limit: int = 20, **kwargs: Any) -> models.Prefetch:
    return models.Prefetch(query=dense(rng), using="dense", limit=limit, **kwargs)


def sparse_prefetch(
    rng: np.random.Generator, name: str = "text", limit: int = 20, **kwargs: Any
) -> models.Prefetch:
    return models.Prefetch(query=sparse_query(rng, name), using=name, limit=limit, **kwargs)


FUSIONS = {
    "rrf": models.FusionQuery(fusion=models.Fusion.RRF),
    "dbsf": models.FusionQuery(fusion=models.Fusion.DBSF),
    "rrf_k1": models.RrfQuery(rrf=models.Rrf(k=1)),
    "rrf_k60": models.RrfQuery(rrf=models.Rrf(k=60)),
}


@pytest.mark.parametrize("fusion", FUSIONS)
def test_dense_and_sparse_prefetches_fuse_like_local_mode(pair, corpus, fusion) -> None:
    """RRF ties often (two points at the same rank of different lists): tied ids compare
    as sets, and a tie cut by the limit as members of the tie."""
    rng = np.random.default_rng(17)
    for case in range(12):
        prefetch = [dense_prefetch(rng), sparse_prefetch(rng, SPARSE_NAMES[case % 2])]
        if case % 4 == 3:
            prefetch.append(sparse_prefetch(rng, "bm", limit=10))
        args = {
            "prefetch": prefetch,
            "query": FUSIONS[fusion],
            "limit": int(rng.integers(1, 16)),
            "offset": int(rng.integers(0, 4)) if case % 3 == 0 else 0,
            "query_filter": random_filter(rng) if case % 2 else None,
            "with_payload": [True, False, ["city"]][case % 3],
            "with_vectors": [False, ["text", "dense"]][case % 2],
        }
        same_query(pair, CORPUS, f"case {case}: {args}", **args)


def test_prefetch_with_its_own_filter_and_score_threshold(pair, corpus) -> None:
    rng = np.random.default_rng(18)
    for case in range(16):
        query = sparse_query(rng, "text")
        scores = [p.score for p in pair[1].query_points(CORPUS, query=query, using="text").points]
        inner = models.Prefetch(
            query=query,
            using="text",
            limit=15,
            filter=random_filter(rng),
            score_threshold=between(scores, rng.random()),
        )
        fusion = FUSIONS[("rrf", "dbsf")[case % 2]]
        args = {
            "prefetch": [inner, dense_prefetch(rng, filter=random_filter(rng))],
            "query": fusion,
        }
        same_query(pair, CORPUS, f"case {case}: {args}", limit=10, **args)


def test_nested_prefetch_feeds_its_parent(pair, corpus) -> None:
    """A dense re-scoring of sparse candidates, fused with an IDF sparse list; and a sparse
    re-scoring of a fusion of dense and sparse candidates."""
    rng = np.random.default_rng(19)
    for case in range(10):
        rescored = models.Prefetch(
            prefetch=[sparse_prefetch(rng, limit=40)], query=dense(rng), using="dense", limit=15
        )
        fusion = FUSIONS[("rrf", "dbsf")[case % 2]]
        outer = [rescored, sparse_prefetch(rng, "bm", limit=15)]
        same_query(pair, CORPUS, f"case {case}", prefetch=outer, query=fusion, limit=10)
        fused = models.Prefetch(
            prefetch=[dense_prefetch(rng, limit=30), sparse_prefetch(rng, "bm", limit=30)],
            query=FUSIONS["dbsf"],
            limit=25,
        )
        query = sparse_query(rng, "text")
        same_query(pair, CORPUS, f"case {case}", prefetch=fused, query=query, using="text")


@pytest.mark.parametrize("direction", ["sparse_then_dense", "dense_then_sparse"])
def test_rescoring_returns_only_prefetched_points(pair, corpus, direction) -> None:
    """The outer query scores the prefetched points only; a point without the outer vector,
    or (sparse) sharing no dimension with the outer query, is dropped."""
    rng = np.random.default_rng(20)
    for case in range(12):
        name = SPARSE_NAMES[case % 2]
        if direction == "sparse_then_dense":
            inner, outer = (
                sparse_prefetch(rng, name, limit=25),
                {"query": dense(rng), "using": "dense"},
            )
        else:
            inner, outer = (
                dense_prefetch(rng, limit=40),
                {"query": sparse_query(rng, name), "using": name},
            )
        found = same_query(pair, CORPUS, f"case {case}", prefetch=inner, limit=30, **outer)
        candidates = pair[1].query_points(
            CORPUS, query=inner.query, using=inner.using, limit=inner.limit
        )
        assert {p.id for p in found} <= {p.id for p in candidates.points}


@pytest.mark.parametrize("using", ["dense", "text"])
def test_rescoring_by_stored_points_leaves_them_out_of_the_prefetches(pair, corpus, using) -> None:
    """A re-scoring query made from point ids (nearest to a point, recommend examples)
    passes `must_not: has_id` for them down to its prefetches, as Qdrant does: a prefetch
    finds the next point in place of each example (the first prefetch here would find the
    first example itself)."""
    rng = np.random.default_rng(23)
    having = sorted(corpus.having(using))
    for case in range(8):
        ids = [having[i] for i in rng.choice(len(having), 3, replace=False)]
        own = models.Prefetch(query=corpus.vectors[ids[0]][using], using=using, limit=5)
        inner = [own, dense_prefetch(rng, limit=12), sparse_prefetch(rng, "text", limit=12)]
        query = (
            ids[0]
            if case % 2
            else models.RecommendQuery(
                recommend=models.RecommendInput(positive=ids[:2], negative=ids[2:])
            )
        )
        same_query(pair, CORPUS, f"case {case}", prefetch=inner, query=query, using=using, limit=10)


def test_query_batch_mixes_sparse_and_hybrid_requests(pair, corpus) -> None:
    rng = np.random.default_rng(21)
    requests = [
        models.QueryRequest(query=sparse_query(rng, "text"), using="text", limit=5),
        models.QueryRequest(
            query=sparse_query(rng, "bm"), using="bm", limit=8, offset=2, with_payload=True
        ),
        models.QueryRequest(
            prefetch=[dense_prefetch(rng), sparse_prefetch(rng)], query=FUSIONS["rrf"], limit=6
        ),
        models.QueryRequest(
            prefetch=[dense_prefetch(rng), sparse_prefetch(rng, "bm")],
            query=FUSIONS["dbsf"],
            filter=random_filter(rng),
            with_vector=["bm"],
        ),
        models.QueryRequest(prefetch=sparse_prefetch(rng), query=dense(rng), using="dense"),
        models.QueryRequest(query=7, using="text", limit=4),
    ]
    got = pair[0].query_batch_points(CORPUS, requests=requests)
    want = pair[1].query_batch_points(CORPUS, requests=requests)
    assert len(got) == len(want) == len(requests)
    for position, (a, b) in enumerate(zip(got, want, strict=True)):
        whole = requests[position].model_copy(update={"limit": 10_000, "offset": 0})
        everything = pair[1].query_batch_points(CORPUS, requests=[whole])[0].points
        assert_same_hits(a.points, b.points, f"request {position}", everything)


# ------------------------------------------------------------------------------ errors


def upsert(vector: dict[str, Any]) -> Callable[[QdrantClient, str], Any]:
    return lambda client, name: client.upsert(
        name, points=[models.PointStruct(id=9, vector=vector)]
    )


def query(vector: Any, using: str | None = "text") -> Callable[[QdrantClient, str], Any]:
    return lambda client, name: client.query_points(name, query=vector, using=using)


BAD = {
    "duplicate indices": S(indices=[3, 1, 3], values=[1.0, 2.0, 3.0]),
    "fewer values than indices": S(indices=[1, 2], values=[1.0]),
    "more values than indices": S(indices=[1], values=[1.0, 2.0]),
    "negative index": S(indices=[-1, 4], values=[1.0, 2.0]),
    "index beyond u32": S(indices=[2**32], values=[1.0]),
    "NaN value (sent as null)": S(indices=[1], values=[float("nan")]),
}
REFUSED = {
    **{f"upsert, {label}": upsert({"text": v}) for label, v in BAD.items()},
    **{f"query, {label}": query(v) for label, v in BAD.items()},
    "batch, duplicate indices": lambda client, name: client.upsert(
        name, points=models.Batch(ids=[9], vectors={"text": [BAD["duplicate indices"]]})
    ),
    "update_vectors, duplicate indices": lambda client, name: client.update_vectors(
        name, points=[models.PointVectors(id=1, vector={"text": BAD["duplicate indices"]})]
    ),
    "prefetch, duplicate indices": lambda client, name: client.query_points(
        name,
        prefetch=[models.Prefetch(query=BAD["duplicate indices"], using="text")],
        query=FUSIONS["rrf"],
    ),
    "upsert, sparse under a dense name": upsert({"dense": S(indices=[1], values=[1.0])}),
    "upsert, dense under a sparse name": upsert({"text": [1.0] * DIM}),
    "upsert, unknown vector name": upsert({"nope": S(indices=[1], values=[1.0])}),
    "update_vectors, dense under a sparse name": lambda client, name: client.update_vectors(
        name, points=[models.PointVectors(id=1, vector={"text": [1.0] * DIM})]
    ),
    "query, sparse on a dense name": query(S(indices=[1], values=[1.0]), using="dense"),
    "query, dense on a sparse name": query([1.0] * DIM, using="text"),
    "query, unknown vector name": query(S(indices=[1], values=[1.0]), using="nope"),
    "query, sparse without using": query(S(indices=[1], values=[1.0]), using=None),
    "delete_vectors, unknown name": lambda client, name: client.delete_vectors(
        name, vectors=["nope"], points=[1]
    ),
    "update_collection, unknown sparse name": lambda client, name: client.update_collection(
        name, sparse_vectors_config={"nope": models.SparseVectorParams(modifier="idf")}
    ),
    "update_collection, a dense name as sparse": lambda client, name: client.update_collection(
        name, sparse_vectors_config={"dense": models.SparseVectorParams(modifier="idf")}
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_invalid_sparse_requests_are_refused(pair, small, case) -> None:
    """400 or 422 from the server, an exception from local mode, and nothing written."""
    for client in pair:
        assert_refused(client, lambda c=client: REFUSED[case](c, small), case)
    assert_unchanged(pair, small)
    assert sparse_config(pair[0], small) == sparse_config(pair[1], small)


def test_one_name_for_a_dense_and_a_sparse_vector_is_refused(pair) -> None:
    """The server refuses (qdrant #3184); local mode accepts it, so only the server side."""
    remote = pair[0]
    if is_local(remote):
        pytest.skip("local mode accepts a dense and a sparse vector of one name")
    with pytest.raises(UnexpectedResponse) as caught:
        remote.create_collection(
            "sp_same_name",
            vectors_config={"x": models.VectorParams(size=2, distance="Dot")},
            sparse_vectors_config={"x": models.SparseVectorParams()},
        )
    assert caught.value.status_code in (400, 422)
    assert not remote.collection_exists("sp_same_name")


RAW_VECTORS = {
    "NaN token": '{"indices":[1],"values":[NaN]}',
    "null value": '{"indices":[1],"values":[null]}',
    "string value": '{"indices":[1],"values":["1.0"]}',
    "string index": '{"indices":["1"],"values":[1.0]}',
    "fractional index": '{"indices":[1.5],"values":[1.0]}',
    "negative index": '{"indices":[-1],"values":[1.0]}',
    "duplicate indices": '{"indices":[1,1],"values":[1.0,2.0]}',
    "length mismatch": '{"indices":[1,2],"values":[1.0]}',
    "values missing": '{"indices":[1]}',
    "indices missing": '{"values":[1.0]}',
    "not an object": "[1.0, 2.0]",
}


@pytest.mark.parametrize("case", RAW_VECTORS)
def test_malformed_sparse_vectors_over_raw_http(pair, small, http, case) -> None:
    """Bodies no client builds: each endpoint that takes a sparse vector answers 4xx with
    Qdrant's error envelope and writes nothing."""
    vector = RAW_VECTORS[case]
    requests = [
        ("PUT", "points", '{"points":[{"id":9,"vector":{"text":%s}}]}'),
        ("PUT", "points", '{"batch":{"ids":[9],"vectors":{"text":[%s]}}}'),
        ("PUT", "points/vectors", '{"points":[{"id":1,"vector":{"text":%s}}]}'),
        ("POST", "points/query", '{"query":%s,"using":"text"}'),
        (
            "POST",
            "points/query",
            '{"prefetch":[{"query":%s,"using":"text"}],"query":{"fusion":"rrf"}}',
        ),
        ("POST", "points/search", '{"vector":{"name":"text","vector":%s},"limit":3}'),
    ]
    for method, path, template in requests:
        response = http.request(
            method,
            f"/collections/{small}/{path}",
            content=(template % vector).encode(),
            headers={"content-type": "application/json"},
        )
        assert response.status_code in (400, 422), (path, template, response.text)
        assert isinstance(response.json()["status"]["error"], str)
    assert_unchanged(pair, small)


def test_a_sparse_example_for_a_dense_vector_is_a_conversion_error(server) -> None:
    """A recommend example that is sparse while `using` names a dense vector: Qdrant's
    conversion error (it once read as an unparsable point id)."""
    url = server.url
    httpx.put(
        f"{url}/collections/sp_conversion",
        json={"vectors": {"d": {"size": 2, "distance": "Dot"}}, "sparse_vectors": {"t": {}}},
    ).raise_for_status()
    example = {"indices": [1], "values": [1.0]}
    response = httpx.post(
        f"{url}/collections/sp_conversion/points/query",
        json={"query": {"recommend": {"positive": [example]}}, "using": "d"},
    )
    assert response.status_code == 400
    assert "Conversion between sparse and regular vectors failed" in response.text


def test_a_sparse_vector_past_the_entries_limit_is_refused(server) -> None:
    """`WAYPOINT_MAX_SPARSE_VALUES` (65,536): one vector longer than that is a 400 that
    names the limit, in both dialects, before its entries are checked one by one."""
    url = server.url
    httpx.put(f"{url}/collections/sp_limit", json={"sparse_vectors": {"t": {}}}).raise_for_status()
    long = {"indices": list(range(65_537)), "values": [1.0] * 65_537}
    response = httpx.post(
        f"{url}/collections/sp_limit/points/query", json={"query": long, "using": "t"}
    )
    assert response.status_code == 400
    assert "WAYPOINT_MAX_SPARSE_VALUES" in response.text
    fits = {"indices": list(range(65_536)), "values": [1.0] * 65_536}
    stored = httpx.put(
        f"{url}/collections/sp_limit/points?wait=true",
        json={"points": [{"id": 1, "vector": {"t": fits}}]},
    )
    assert stored.status_code == 200
