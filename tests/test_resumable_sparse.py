"""Resumable sparse and hybrid (fused) queries end to end, in both dialects.

These sessions rank every candidate once per engine (app/index/resumable_ranked.py), so the
whole order is checked against numpy: the sparse dot product (Qdrant's IDF weights where the
collection asks for them) and RRF over the FULL dense and sparse rankings (exact cosine, ties
to the older write). Invariants, as for dense sessions (tests/test_resumable.py): no point
twice; only matching points; reading until empty returns every matching point that existed
throughout — on another worker, after a server is killed and another started, and while
points are upserted and deleted between pages.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest

DIM = 4
N_POINTS = 240
VOCAB = 40
QUERY_DENSE = [0.3, -1.0, 0.5, 0.2]
QUERY_SPARSE = {"indices": [3, 11, 27], "values": [0.8, 1.0, 0.35]}
UPSTASH_RRF, QDRANT_RRF = 60, 2
TOL = 1e-6  # Upstash scores go through float32


@dataclass
class Data:
    """The points written, as the test keeps them: the truth the sessions are checked on."""

    dense: dict[int, np.ndarray] = field(default_factory=dict)
    sparse: dict[int, tuple[list[int], list[float]]] = field(default_factory=dict)
    genre: dict[int, str] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)  # insertion order: the dense tie-break


def make_data(ids: range, seed: int, *, gaps: bool) -> Data:
    """Random points; the last three repeat the dense vectors of the first three (exact
    ties). With `gaps`, some points have no sparse vector and some no dense one (Qdrant)."""
    rng = np.random.default_rng(seed)
    data = Data()
    for n, pid in enumerate(ids):
        data.order.append(pid)
        data.genre[pid] = "x" if pid % 3 == 0 else "y"
        if not (gaps and pid % 17 == 5):
            vector = rng.normal(size=DIM)
            if n >= len(ids) - 3:
                vector = data.dense[ids[n - len(ids) + 3]]
            data.dense[pid] = vector
        if not (gaps and pid % 11 == 4):
            dims = sorted(rng.choice(VOCAB, int(rng.integers(1, 4)), replace=False).tolist())
            data.sparse[pid] = dims, rng.uniform(0.1, 1.0, len(dims)).round(4).tolist()
    return data


# ------------------------------------------------------------------ the truth


def dense_ranking(data: Data, keep: set[int] | None = None) -> list[int]:
    """Exact cosine, best first, ties to the older write."""
    query = np.asarray(QUERY_DENSE) / np.linalg.norm(QUERY_DENSE)
    pids = [p for p in data.order if p in data.dense and (keep is None or p in keep)]
    scores = {p: float(np.dot(data.dense[p] / np.linalg.norm(data.dense[p]), query)) for p in pids}
    return sorted(pids, key=lambda p: -scores[p])  # stable: insertion order on ties


def sparse_scores(data: Data, idf: bool, keep: set[int] | None = None) -> dict[int, float]:
    """Dot products of the points sharing a dimension with the query; Qdrant's IDF
    (over every point with a sparse vector) when asked."""
    weights = dict(zip(QUERY_SPARSE["indices"], QUERY_SPARSE["values"], strict=True))
    if idf:
        total = len(data.sparse)
        for dim in weights:
            df = sum(dim in dims for dims, _ in data.sparse.values())
            weights[dim] *= float(np.log((total - df + 0.5) / (df + 0.5) + 1.0))
    scores = {}
    for pid, (dims, values) in data.sparse.items():
        shared = [weights[d] * v for d, v in zip(dims, values, strict=True) if d in weights]
        if shared and (keep is None or pid in keep):
            scores[pid] = sum(shared)
    return scores


def rrf(data: Data, k: int, idf: bool, keep: set[int] | None = None) -> dict[int, float]:
    """Σ 1/(k + 0-based rank) over the full dense and the full sparse ranking."""
    fused: dict[int, float] = {}
    sparse = sparse_scores(data, idf, keep)
    for ranking in (dense_ranking(data, keep), sorted(sparse, key=lambda p: -sparse[p])):
        for rank, pid in enumerate(ranking):
            fused[pid] = fused.get(pid, 0.0) + 1.0 / (k + rank)
    return fused


def assert_ranked_as(got: list[tuple[int, float]], truth: dict[int, float]) -> None:
    """Every expected point once, each score right, in order up to exact ties."""
    ids = [pid for pid, _ in got]
    assert len(ids) == len(set(ids)), "a point returned twice"
    assert set(ids) == set(truth), (set(truth) - set(ids), set(ids) - set(truth))
    want = sorted(truth.values(), reverse=True)
    for at, (pid, score) in enumerate(got):
        assert score == pytest.approx(want[at], rel=TOL, abs=TOL), (at, pid, score, want[at])
        assert truth[pid] == pytest.approx(want[at], rel=1e-9, abs=1e-12), (at, pid)


# ------------------------------------------------------------------- dialects


class Upstash:
    """Indexes `sp` (SPARSE) and `hy` (HYBRID); wire ids are `p<n>`."""

    name, rrf_k, idf = "upstash", UPSTASH_RRF, False

    def create(self, url: str, index: str, kind: str, data: Data) -> None:
        body = {"indexType": "SPARSE"}
        if kind == "hybrid":
            body = {"dimension": DIM, "similarityFunction": "COSINE", "indexType": "HYBRID"}
        assert httpx.put(f"{url}/upstash/{index}", json=body).status_code == 200
        self.upsert(url, index, kind, data, data.order)

    def upsert(self, url: str, index: str, kind: str, data: Data, pids: list[int]) -> None:
        rows = []
        for pid in pids:
            dims, values = data.sparse[pid]
            row: dict[str, Any] = {
                "id": f"p{pid}",
                "sparseVector": {"indices": dims, "values": values},
                "metadata": {"genre": data.genre[pid], "n": pid},
            }
            if kind == "hybrid":
                row["vector"] = data.dense[pid].tolist()
            rows.append(row)
        response = httpx.post(f"{url}/upstash/{index}/upsert", json=rows, timeout=60)
        assert response.status_code == 200, response.text

    def delete(self, url: str, index: str, pids: list[int]) -> None:
        body = {"ids": [f"p{pid}" for pid in pids]}
        response = httpx.request("DELETE", f"{url}/upstash/{index}/delete", json=body)
        assert response.status_code == 200, response.text

    def _body(self, kind: str, k: int, genre: str | None, idf: bool = False) -> dict:
        body: dict[str, Any] = {"sparseVector": QUERY_SPARSE, "topK": k, "includeMetadata": True}
        if kind == "hybrid":
            body |= {"vector": QUERY_DENSE, "fusionAlgorithm": "RRF"}
        if genre:
            body["filter"] = f"genre = '{genre}'"
        if idf:
            body["weightingStrategy"] = "IDF"
        return body

    @staticmethod
    def _hits(scores: list[dict]) -> list[tuple[int, float, dict]]:
        return [(int(s["id"][1:]), s["score"], s["metadata"]) for s in scores]

    def start(self, url, index, kind, k=10, genre=None, idf=False):
        body = self._body(kind, k, genre, idf) | {"maxIdle": 3600}
        response = httpx.post(f"{url}/upstash/{index}/resumable-query", json=body, timeout=60)
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        return result["uuid"], self._hits(result["scores"])

    def next(self, url, index, handle, k):
        body = {"uuid": handle, "additionalK": k}
        response = httpx.post(f"{url}/upstash/{index}/resumable-query-next", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return self._hits(response.json()["result"])

    def plain(self, url, index, kind, k, idf=False):
        body = self._body(kind, k, None, idf)
        response = httpx.post(f"{url}/upstash/{index}/query", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return self._hits(response.json()["result"])

    def stop(self, url, index, handle):
        body = {"uuid": handle}
        assert httpx.post(f"{url}/upstash/{index}/resumable-query-end", json=body).is_success


class Qdrant:
    """One collection per data set, dense `d` and sparse `t` (IDF); some points lack one."""

    name, rrf_k, idf = "qdrant", QDRANT_RRF, True

    def create(self, url: str, index: str, kind: str, data: Data) -> None:
        body = {
            "vectors": {"d": {"size": DIM, "distance": "Cosine"}},
            "sparse_vectors": {"t": {"modifier": "idf"}},
        }
        assert httpx.put(f"{url}/collections/{index}", json=body).status_code == 200
        self.upsert(url, index, kind, data, data.order)

    def upsert(self, url: str, index: str, kind: str, data: Data, pids: list[int]) -> None:
        points = []
        for pid in pids:
            vector: dict[str, Any] = {}
            if pid in data.dense:
                vector["d"] = data.dense[pid].tolist()
            if pid in data.sparse:
                dims, values = data.sparse[pid]
                vector["t"] = {"indices": dims, "values": values}
            payload = {"genre": data.genre[pid], "n": pid}
            points.append({"id": pid, "vector": vector, "payload": payload})
        response = httpx.put(
            f"{url}/collections/{index}/points?wait=true", json={"points": points}, timeout=60
        )
        assert response.status_code == 200, response.text

    def delete(self, url: str, index: str, pids: list[int]) -> None:
        response = httpx.post(
            f"{url}/collections/{index}/points/delete?wait=true", json={"points": pids}
        )
        assert response.status_code == 200, response.text

    def _body(self, kind: str, k: int, genre: str | None) -> dict:
        sparse = {"indices": QUERY_SPARSE["indices"], "values": QUERY_SPARSE["values"]}
        body: dict[str, Any] = {"query": sparse, "using": "t", "limit": k, "with_payload": True}
        if kind == "hybrid":
            prefetch = [{"query": QUERY_DENSE, "using": "d"}, {"query": sparse, "using": "t"}]
            body = {"prefetch": prefetch, "query": {"fusion": "rrf"}, "limit": k}
            body["with_payload"] = True
        if genre:
            body["filter"] = {"must": [{"key": "genre", "match": {"value": genre}}]}
        return body

    @staticmethod
    def _hits(points: list[dict]) -> list[tuple[int, float, dict]]:
        return [(p["id"], p["score"], p["payload"]) for p in points]

    def start(self, url, index, kind, k=10, genre=None, idf=False):
        body = self._body(kind, k, genre) | {"max_idle": 3600}
        response = httpx.post(
            f"{url}/collections/{index}/points/query/resumable", json=body, timeout=60
        )
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        return result["id"], self._hits(result["points"])

    def next(self, url, index, handle, k):
        response = httpx.post(
            f"{url}/collections/{index}/points/query/resumable/{handle}/next",
            json={"limit": k},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return self._hits(response.json()["result"]["points"])

    def plain(self, url, index, kind, k, idf=False):
        body = self._body(kind, k, None)
        response = httpx.post(f"{url}/collections/{index}/points/query", json=body, timeout=60)
        assert response.status_code == 200, response.text
        return self._hits(response.json()["result"]["points"])

    def stop(self, url, index, handle):
        response = httpx.delete(f"{url}/collections/{index}/points/query/resumable/{handle}")
        assert response.json()["result"] is True


DIALECTS = {"upstash": Upstash(), "qdrant": Qdrant()}
INDEX = {"sparse": "sp", "hybrid": "hy"}  # Upstash's index types; Qdrant uses "qc" for both


def index_of(api, kind: str) -> str:
    return INDEX[kind] if api.name == "upstash" else "qc"


def read_all(api, urls: list[str], index: str, handle: str, k: int = 37) -> list[tuple]:
    """Page until empty, round robin over `urls` (each call a new connection, so a
    several-worker server deals them to its workers in turn)."""
    hits, turn = [], 0
    while page := api.next(urls[turn % len(urls)], index, handle, k):
        assert len(page) <= k
        hits.extend(page)
        turn += 1
    return hits


@pytest.fixture(scope="module")
def env(server_factory):
    """One two-worker server; the module's data in both dialects."""
    server = server_factory(env={"WAYPOINT_WORKERS": "2"})
    upstash = make_data(range(N_POINTS), seed=5, gaps=False)
    qdrant = make_data(range(N_POINTS), seed=6, gaps=True)
    DIALECTS["upstash"].create(server.url, "sp", "sparse", upstash)
    DIALECTS["upstash"].create(server.url, "hy", "hybrid", upstash)
    DIALECTS["qdrant"].create(server.url, "qc", "hybrid", qdrant)
    return {"server": server, "factory": server_factory, "upstash": upstash, "qdrant": qdrant}


def expected(api, kind: str, data: Data, keep: set[int] | None = None, *, idf: bool):
    if kind == "sparse":
        return sparse_scores(data, idf, keep)
    return rrf(data, api.rrf_k, api.idf, keep)


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sparse_session_is_the_exact_sparse_ranking(env, dialect: str) -> None:
    api, url, data = DIALECTS[dialect], env["server"].url, env[dialect]
    index = index_of(api, "sparse")
    handle, first = api.start(url, index, "sparse", k=10, idf=True)
    plain = api.plain(url, index, "sparse", 10, idf=True)
    assert [p for p, _, _ in first] == [p for p, _, _ in plain]
    assert [s for _, s, _ in first] == pytest.approx([s for _, s, _ in plain], rel=TOL)
    hits = first + read_all(api, [url], index, handle)
    scores = [s for _, s, _ in hits]
    assert all(a >= b for a, b in itertools.pairwise(scores))
    truth = sparse_scores(data, idf=True)  # Upstash: asked with weightingStrategy IDF
    assert_ranked_as([(p, s) for p, s, _ in hits], truth)
    sharing_none = {p for p in data.order if p not in truth}
    assert sharing_none, "the data should hold points the query shares no dimension with"


@pytest.mark.parametrize("idf", [False, True])
@pytest.mark.parametrize("dialect", ["upstash"])
def test_sparse_session_scores_equal_the_plain_query(env, dialect: str, idf: bool) -> None:
    """The first page is the plain query's top k with the very same scores.

    Fails with IDF (Qdrant's `modifier: idf` fails alike): the session freezes the IDF-weighted
    query values in float64, but `SessionService._open_ranked` reads them back through
    `SparseVector.parse`, which rounds them to float32, and scores without `precise=True`;
    the plain query weighs in float64. Scores then differ by about one float32 ulp, and
    points that close may swap places between the session and the plain query.
    """
    api, url = DIALECTS[dialect], env["server"].url
    _, first = api.start(url, "sp", "sparse", k=10, idf=idf)
    plain = api.plain(url, "sp", "sparse", 10, idf=idf)
    assert [(p, s) for p, s, _ in first] == [(p, s) for p, s, _ in plain]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_hybrid_rrf_session_is_rrf_over_the_full_rankings(env, dialect: str) -> None:
    api, url, data = DIALECTS[dialect], env["server"].url, env[dialect]
    index = index_of(api, "hybrid")
    handle, first = api.start(url, index, "hybrid", k=10)
    hits = first + read_all(api, [url], index, handle)
    assert set(data.dense) <= {p for p, _, _ in hits}  # the dense ranking covers every point
    assert_ranked_as([(p, s) for p, s, _ in hits], rrf(data, api.rrf_k, api.idf))
    api.stop(url, index, handle)


@pytest.mark.parametrize("kind", ["sparse", "hybrid"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_filter_restricts_every_page(env, dialect: str, kind: str) -> None:
    api, url, data = DIALECTS[dialect], env["server"].url, env[dialect]
    index = index_of(api, kind)
    handle, page = api.start(url, index, kind, k=7, genre="x")
    pages = [page]
    while page := api.next(url, index, handle, 7):
        pages.append(page)
    assert all(meta["genre"] == "x" for page in pages for _, _, meta in page)
    genre_x = {p for p, g in data.genre.items() if g == "x"}
    truth = expected(api, kind, data, genre_x, idf=api.idf)
    assert_ranked_as([(p, s) for page in pages for p, s, _ in page], truth)


def test_continues_on_other_workers_and_after_a_crash(env) -> None:
    """Every (dialect, kind) session at once, so the module starts one more server, not four:
    pages alternate between the two workers of the module's server, then a process started
    after the sessions (no engine cache: it rebuilds every page from the row) takes turns
    with them, is SIGKILLed mid-session, and the workers, whose cached engines are now
    behind the row, finish."""
    main, cases = env["server"], [(d, k) for d in DIALECTS for k in ("sparse", "hybrid")]
    hits, handles = {}, {}
    for dialect, kind in cases:
        api, index = DIALECTS[dialect], index_of(DIALECTS[dialect], kind)
        handles[dialect, kind], hits[dialect, kind] = api.start(main.url, index, kind, k=5)
        for _ in range(4):  # new connections: the two workers take turns
            hits[dialect, kind] += api.next(main.url, index, handles[dialect, kind], 5)
    late = env["factory"](env={"WAYPOINT_SESSION_CACHE": "0"})
    for dialect, kind in cases:
        api, index = DIALECTS[dialect], index_of(DIALECTS[dialect], kind)
        for url in (late.url, main.url, late.url):
            hits[dialect, kind] += api.next(url, index, handles[dialect, kind], 9)
    late.kill()
    for dialect, kind in cases:
        api, index = DIALECTS[dialect], index_of(DIALECTS[dialect], kind)
        hits[dialect, kind] += read_all(api, [main.url], index, handles[dialect, kind], 23)
        truth = expected(api, kind, env[dialect], idf=api.idf)
        assert_ranked_as([(p, s) for p, s, _ in hits[dialect, kind]], truth)


@pytest.mark.parametrize("kind", ["sparse", "hybrid"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_concurrent_upserts_and_deletes(env, dialect: str, kind: str) -> None:
    api, url = DIALECTS[dialect], env["server"].url
    index = f"w{dialect}{kind}"
    data = make_data(range(N_POINTS), seed=7, gaps=dialect == "qdrant")
    api.create(url, index, kind, data)
    matching = set(expected(api, kind, data, idf=api.idf))
    handle, page = api.start(url, index, kind, k=20)
    seen = [p for p, _, _ in page]
    unseen = sorted(matching - set(seen))
    deleted = set(seen[::4]) | set(unseen[::9])
    api.delete(url, index, sorted(deleted))
    added = make_data(range(1000, 1030), seed=8, gaps=False)
    for pid in added.order:  # new points that share the query's dimensions
        added.sparse[pid] = [3, 27], [0.9, 0.5]
    api.upsert(url, index, kind, added, added.order)
    rest = []
    for _ in range(3):
        rest += [p for p, _, _ in api.next(url, index, handle, 15)]
    late = set(unseen[1::9]) - set(rest)
    api.delete(url, index, sorted(late))
    deleted |= late
    rest += [p for p, _, _ in read_all(api, [url], index, handle, 25)]
    everything = seen + rest
    assert len(everything) == len(set(everything))
    assert deleted.isdisjoint(rest)
    assert matching - deleted <= set(everything)
    assert set(everything) - matching <= set(added.order)


@pytest.mark.parametrize("kind", ["sparse", "hybrid"])
def test_qdrant_session_returns_the_vectors_a_plain_query_returns(env, kind: str) -> None:
    """`with_vector` on a sparse or hybrid session: every page carries each point's vectors
    as a retrieve of those points gives them (they came back empty)."""
    url, api = env["server"].url, DIALECTS["qdrant"]
    body = api._body(kind, 12, None) | {"with_vector": True, "max_idle": 60}
    started = httpx.post(f"{url}/collections/qc/points/query/resumable", json=body, timeout=60)
    got = {p["id"]: p["vector"] for p in started.json()["result"]["points"]}
    stored = httpx.post(
        f"{url}/collections/qc/points", json={"ids": list(got), "with_vector": True}, timeout=60
    )
    assert got == {p["id"]: p["vector"] for p in stored.json()["result"]}
    assert len(got) == 12 and all(vectors for vectors in got.values())
