"""Text in, results out: `data` (Upstash) and `Document`s (Qdrant) embedded by the server.

References, none of them the server's own output:
- dense: ../shared/data/wordnet-minilm, sentence-transformers' all-MiniLM-L6-v2 embeddings
  of the WordNet passages (`base.npy`) and of the query texts (`queries.npy`);
- sparse: `app.embedding.bm25`, itself checked against fastembed's Qdrant/bm25 output
  (tests/test_bm25.py), and for Qdrant the official client's local mode given the vectors
  the documents should become.

A few hundred passages go through each dialect; the stored vectors are read back and
compared with the references, and text queries must find the top 10 that numpy finds over
the stored vectors with the reference query embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from upstash_vector import Index
from upstash_vector.types import Data, QueryMode, SparseVector, WeightingStrategy

from app.embedding import bm25, minilm

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wordnet-minilm"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not present")

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
N_PASSAGES = 300
N_QUERIES = 20
TOP = 10
TIE = 1e-4  # float16 references: scores this close may swap places
TOKEN = "token"


def reference() -> tuple[list[int], list[str], np.ndarray, list[str], np.ndarray]:
    """Passage rows, their texts and embeddings; query texts and embeddings."""
    texts = (DATA / "base_texts.txt").read_text(encoding="utf-8").split("\n")
    base = np.load(DATA / "base.npy", mmap_mode="r")
    rows = np.linspace(0, len(base) - 1, N_PASSAGES).astype(int).tolist()
    queries = (DATA / "query_texts.txt").read_text(encoding="utf-8").split("\n")[:N_QUERIES]
    query_vectors = np.load(DATA / "queries.npy")[:N_QUERIES].astype(np.float32)
    return rows, [texts[i] for i in rows], base[rows].astype(np.float32), queries, query_vectors


@pytest.fixture(scope="module")
def ref() -> tuple[list[int], list[str], np.ndarray, list[str], np.ndarray]:
    return reference()


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def assert_same_top(found: list[Any], ids: list[Any], stored: np.ndarray, query: np.ndarray):
    """`found` is the numpy top 10 of `stored` (rows in `ids` order) for `query`, up to
    swaps between scores closer than TIE."""
    scores = unit(stored) @ (query / np.linalg.norm(query))
    order = np.argsort(-scores)
    tenth = scores[order[TOP - 1]]
    by_id = dict(zip(ids, scores, strict=True))
    assert len(found) == TOP
    assert all(by_id[i] >= tenth - TIE for i in found), (found, [ids[j] for j in order[:TOP]])
    assert {ids[j] for j in order[:TOP] if scores[j] > tenth + TIE} <= set(found)


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", unit(got), unit(want))


# --------------------------------------------------------------------------- Upstash


@pytest.fixture(scope="module")
def upstash(server) -> dict[str, str]:
    indexes = {
        "text_dense": {"embeddingModel": MINILM},
        "text_hybrid": {"embeddingModel": MINILM, "sparseEmbeddingModel": "BM25"},
    }
    for name, body in indexes.items():
        made = httpx.put(f"{server.url}/upstash/{name}", json=body, timeout=30)
        assert made.json() == {"result": "Success"}, made.text
    return {name: f"{server.url}/upstash/{name}" for name in indexes}


def test_upstash_info_names_the_models(upstash) -> None:
    info = Index(url=upstash["text_hybrid"], token=TOKEN).info()
    assert info.dimension == 384 and info.similarity_function == "COSINE"
    assert info.dense_index.embedding_model == MINILM
    assert info.sparse_index.embedding_model == "BM25"
    dense = Index(url=upstash["text_dense"], token=TOKEN).info()
    assert dense.dense_index.embedding_model == MINILM and not dense.sparse_index


def test_upstash_data_is_embedded_as_sentence_transformers_does(upstash, ref) -> None:
    rows, texts, base, queries, query_vectors = ref
    index = Index(url=upstash["text_dense"], token=TOKEN)
    ids = [str(row) for row in rows]
    for start in range(0, N_PASSAGES, 100):
        batch = [Data(id=i, data=t) for i, t in zip(ids, texts, strict=True)][start : start + 100]
        assert index.upsert(batch) == "Success"
    fetched = index.fetch(ids, include_vectors=True, include_data=True)
    assert [f.data for f in fetched] == texts
    stored = np.asarray([f.vector for f in fetched], dtype=np.float32)
    assert cosines(stored, base).min() >= 0.999
    for text, vector in zip(queries, query_vectors, strict=True):
        found = index.query(data=text, top_k=TOP)
        assert_same_top([r.id for r in found], ids, stored, vector)


def test_upstash_hybrid_data_query_is_the_query_of_its_vectors(upstash, ref) -> None:
    """`data` on a hybrid index: MiniLM and BM25 (query weights) vectors, fused by RRF;
    the same as sending those vectors. queryMode picks one of them."""
    rows, texts, _, queries, _ = ref
    index = Index(url=upstash["text_hybrid"], token=TOKEN)
    index.upsert([Data(id=str(r), data=t) for r, t in zip(rows[:120], texts[:120], strict=True)])
    stored = index.fetch(str(rows[7]), include_vectors=True)[0]
    indices, values = bm25.document(texts[7])
    assert stored.sparse_vector.indices == indices.tolist()
    assert np.allclose(stored.sparse_vector.values, values)
    for text in queries[:5]:
        dense = minilm.embed([text])[0].tolist()
        sparse = SparseVector(*(part.tolist() for part in bm25.query(text)))
        for mode, sent in (
            (QueryMode.HYBRID, {"vector": dense, "sparse_vector": sparse}),
            (QueryMode.DENSE, {"vector": dense}),
            (QueryMode.SPARSE, {"sparse_vector": sparse}),
        ):
            if mode is QueryMode.DENSE:
                continue  # a hybrid index needs both vectors in a vector query
            by_data = index.query(data=text, top_k=5, query_mode=mode)
            by_vectors = index.query(**sent, top_k=5)
            assert [(r.id, r.score) for r in by_data] == [(r.id, r.score) for r in by_vectors]
        dense_only = index.query(data=text, top_k=5, query_mode=QueryMode.DENSE)
        scores = [r.score for r in dense_only]
        assert scores == sorted(scores, reverse=True) and 0.5 < scores[0] <= 1.0


def test_upstash_bm25_with_idf(upstash) -> None:
    """IDF on a data query weighs each query term by the index's own statistics."""
    index = Index(url=upstash["text_hybrid"], token=TOKEN)
    index.upsert(
        [
            Data(id="idf-1", data="zebra quagga okapi"),
            Data(id="idf-2", data="zebra okapi"),
            Data(id="idf-3", data="quagga"),
        ],
        namespace="idf",
    )
    plain = index.query(data="zebra quagga", query_mode=QueryMode.SPARSE, namespace="idf")
    idf = index.query(
        data="zebra quagga",
        query_mode=QueryMode.SPARSE,
        weighting_strategy=WeightingStrategy.IDF,
        namespace="idf",
    )
    assert plain[0].id == idf[0].id == "idf-1"
    zebra, quagga = (int(bm25.query(w)[0][0]) for w in ("zebra", "quagga"))
    indices, values = bm25.document("zebra quagga okapi")
    weight = dict(zip(indices.tolist(), values.astype(np.float64).tolist(), strict=True))
    idf_of = np.log((3 - 2 + 0.5) / (2 + 0.5) + 1.0)  # both terms are in 2 of 3
    assert plain[0].score == pytest.approx(weight[zebra] + weight[quagga], rel=1e-6)
    assert idf[0].score == pytest.approx(idf_of * (weight[zebra] + weight[quagga]), rel=1e-6)


def test_upstash_resumable_data_query_pages_through_the_ranking(upstash, ref) -> None:
    index = Index(url=upstash["text_dense"], token=TOKEN)
    text = ref[3][0]
    whole = index.query(data=text, top_k=30)
    result, handle = index.resumable_query(data=text, top_k=10)
    pages = [result, handle.fetch_next(10), handle.fetch_next(10)]
    handle.stop()
    assert [r.id for page in pages for r in page] == [r.id for r in whole]


def test_upstash_update_with_data_re_embeds(upstash) -> None:
    index = Index(url=upstash["text_dense"], token=TOKEN)
    index.upsert([Data(id="moving", data="a recipe for lentil soup")], namespace="upd")
    assert index.update("moving", data="the rules of ice hockey", namespace="upd")
    point = index.fetch("moving", include_vectors=True, include_data=True, namespace="upd")[0]
    assert point.data == "the rules of ice hockey"
    want = minilm.embed(["the rules of ice hockey"])[0]
    assert float(np.dot(unit(np.asarray([point.vector]))[0], want)) > 0.9999


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"embeddingModel": "BAAI/bge-small-en-v1.5"}, "Unknown embedding model"),
        ({"embeddingModel": MINILM, "dimension": 256}, "does not match"),
        ({"indexType": "HYBRID", "embeddingModel": MINILM}, "both"),
        ({"indexType": "DENSE", "sparseEmbeddingModel": "BM25"}, "no sparseEmbeddingModel"),
        ({"embeddingModel": "BM25"}, "must be a dense model"),
    ],
)
def test_upstash_bad_models_are_refused(server, body, fragment) -> None:
    answer = httpx.put(f"{server.url}/upstash/refused", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert fragment in answer.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("query-data", {"data": "   "}, "empty"),
        ("query-data", {"data": "x", "queryMode": "BOTH"}, "queryMode"),
        ("query-data", {"topK": 3}, "needs data"),
        ("query", {"data": "x", "vector": [0.0] * 384}, "not both"),
        ("upsert-data", [{"id": "e", "data": ""}], "empty"),
        ("upsert-data", [{"id": "e"}], "needs data"),
        ("resumable-query-data", {"data": ""}, "empty"),
    ],
)
def test_upstash_bad_text_input(server, upstash, path, body, fragment) -> None:
    answer = httpx.post(f"{upstash['text_dense']}/{path}", json=body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert fragment in answer.json()["error"]


def test_upstash_data_needs_a_model(server) -> None:
    assert httpx.put(f"{server.url}/upstash/raw2", json={"dimension": 2}).status_code == 200
    for path, body in [
        ("upsert-data", [{"id": "a", "data": "text"}]),
        ("query-data", {"data": "text"}),
        ("resumable-query-data", {"data": "text"}),
        ("upsert", [{"id": "a", "data": "text"}]),
    ]:
        answer = httpx.post(f"{server.url}/upstash/raw2/{path}", json=body, timeout=30)
        assert answer.status_code == 400, (path, answer.text)
    fetched = httpx.post(f"{server.url}/upstash/raw2/fetch", json={"ids": ["a"]}).json()
    assert fetched == {"result": [None]}  # nothing half-written


# ---------------------------------------------------------------------------- Qdrant


def qdrant_config() -> dict[str, Any]:
    return {
        "vectors_config": {"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
        "sparse_vectors_config": {"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
    }


@pytest.fixture(scope="module")
def qdrant(server, ref) -> tuple[QdrantClient, QdrantClient]:
    """(server with Documents, local mode with the vectors they should become), loaded."""
    rows, texts, _, _, _ = ref
    remote = QdrantClient(url=server.url, cloud_inference=True, timeout=60)
    local = QdrantClient(":memory:")
    for client in (remote, local):
        client.create_collection("texts", **qdrant_config())
    documents = [
        models.PointStruct(
            id=row,
            vector={
                "dense": models.Document(text=text, model=MINILM),
                "bm25": models.Document(text=text, model="Qdrant/bm25"),
            },
            payload={"text": text},
        )
        for row, text in zip(rows, texts, strict=True)
    ]
    for start in range(0, N_PASSAGES, 100):
        remote.upsert("texts", points=documents[start : start + 100], wait=True)
    dense = minilm.embed(texts)
    vectors = [
        models.PointStruct(
            id=row,
            vector={"dense": dense[i].tolist(), "bm25": sparse_model(bm25.document(text))},
            payload={"text": text},
        )
        for i, (row, text) in enumerate(zip(rows, texts, strict=True))
    ]
    local.upsert("texts", points=vectors)
    yield remote, local
    remote.close()


def sparse_model(vector: tuple[np.ndarray, np.ndarray]) -> models.SparseVector:
    return models.SparseVector(indices=vector[0].tolist(), values=vector[1].tolist())


def test_qdrant_documents_are_stored_as_their_vectors(qdrant, ref) -> None:
    rows, texts, base, _, _ = ref
    remote, _ = qdrant
    points = remote.retrieve("texts", ids=rows, with_vectors=True)
    by_id = {p.id: p for p in points}
    stored = np.asarray([by_id[r].vector["dense"] for r in rows], dtype=np.float32)
    assert cosines(stored, base).min() >= 0.999
    for row, text in zip(rows[:50], texts[:50], strict=True):
        indices, values = bm25.document(text)
        sparse = by_id[row].vector["bm25"]
        assert sparse.indices == indices.tolist()
        assert np.allclose(sparse.values, values, rtol=1e-6)


def test_qdrant_dense_document_queries_find_the_numpy_top_10(qdrant, ref) -> None:
    rows, _, _, queries, query_vectors = ref
    remote, _ = qdrant
    stored_points = remote.retrieve("texts", ids=rows, with_vectors=["dense"])
    by_id = {p.id: p.vector["dense"] for p in stored_points}
    stored = np.asarray([by_id[r] for r in rows], dtype=np.float32)
    for text, vector in zip(queries, query_vectors, strict=True):
        found = remote.query_points(
            "texts", query=models.Document(text=text, model=MINILM), using="dense", limit=TOP
        ).points
        assert_same_top([p.id for p in found], rows, stored, vector)


def test_qdrant_documents_query_as_their_vectors_would(qdrant, ref) -> None:
    """Dense, BM25 with IDF, and both fused: the server given Documents answers what
    local mode answers given the vectors (BM25 queries weigh each term 1). Points tied on
    score may come in either order; a fusion is compared only when its lists hold no tie
    (a tie's order changes the ranks RRF adds up)."""
    remote, local = qdrant
    fused = 0
    for text in ref[3]:
        dense = minilm.embed([text])[0].tolist()
        sparse = sparse_model(bm25.query(text))
        lists = []
        for document, vector, using in (
            (models.Document(text=text, model=MINILM), dense, "dense"),
            (models.Document(text=text, model="qdrant/bm25"), sparse, "bm25"),
        ):
            got = remote.query_points("texts", query=document, using=using, limit=20).points
            want = local.query_points("texts", query=vector, using=using, limit=20).points
            assert_same_ranking(got, want)
            lists.append(want)
        if any(has_ties(points) for points in lists):
            continue
        fused += 1
        got = remote.query_points(
            "texts",
            prefetch=[
                models.Prefetch(query=models.Document(text=text, model=MINILM), using="dense"),
                models.Prefetch(
                    query=models.Document(text=text, model="Qdrant/bm25"), using="bm25"
                ),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
        ).points
        want = local.query_points(
            "texts",
            prefetch=[
                models.Prefetch(query=dense, using="dense"),
                models.Prefetch(query=sparse, using="bm25"),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
        ).points
        assert_same_ranking(got, want)
    assert fused >= 5


def has_ties(points: list[models.ScoredPoint]) -> bool:
    scores = [round(p.score, 5) for p in points]
    return len(set(scores)) < len(scores)


def assert_same_ranking(got: list[models.ScoredPoint], want: list[models.ScoredPoint]) -> None:
    """Same scores in order; the same points at each score (all of them, bar the last)."""
    assert [p.score for p in got] == pytest.approx([p.score for p in want], rel=1e-4)
    groups: dict[float, tuple[set, set]] = {}
    for mine, theirs in zip(got, want, strict=True):
        ours, others = groups.setdefault(round(theirs.score, 5), (set(), set()))
        ours.add(mine.id)
        others.add(theirs.id)
    last = round(want[-1].score, 5) if want else None
    assert all(a == b for score, (a, b) in groups.items() if score != last)


def test_qdrant_nearest_and_recommend_take_documents(qdrant, ref) -> None:
    remote, local = qdrant
    text, other = ref[3][0], ref[3][1]
    got = remote.query_points(
        "texts",
        query=models.NearestQuery(nearest=models.Document(text=text, model=MINILM)),
        using="dense",
    ).points
    want = local.query_points("texts", query=minilm.embed([text])[0].tolist(), using="dense")
    assert [p.id for p in got] == [p.id for p in want.points]
    got = remote.query_points(
        "texts",
        query=models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[models.Document(text=text, model=MINILM)],
                negative=[models.Document(text=other, model=MINILM)],
            )
        ),
        using="dense",
    ).points
    vectors = minilm.embed([text, other])
    want = local.query_points(
        "texts",
        query=models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[vectors[0].tolist()], negative=[vectors[1].tolist()]
            )
        ),
        using="dense",
    ).points
    assert [p.id for p in got] == [p.id for p in want]


def test_qdrant_batch_and_update_vectors_take_documents(server) -> None:
    client = QdrantClient(url=server.url, cloud_inference=True)
    client.create_collection("texts_ops", **qdrant_config())
    client.upsert(
        "texts_ops",
        points=models.Batch(
            ids=[1, 2],
            vectors={
                "dense": [models.Document(text=t, model=MINILM) for t in ("apple", "pear")],
                "bm25": [models.Document(text=t, model="Qdrant/bm25") for t in ("apple", "pear")],
            },
        ),
    )
    client.update_vectors(
        "texts_ops",
        points=[
            models.PointVectors(id=2, vector={"dense": models.Document(text="plum", model=MINILM)})
        ],
    )
    client.batch_update_points(
        "texts_ops",
        update_operations=[
            models.UpsertOperation(
                upsert=models.PointsList(
                    points=[
                        models.PointStruct(
                            id=3,
                            vector={"bm25": models.Document(text="cherry", model="Qdrant/bm25")},
                        )
                    ]
                )
            )
        ],
    )
    points = {p.id: p for p in client.retrieve("texts_ops", ids=[1, 2, 3], with_vectors=True)}
    expected = minilm.embed(["apple", "plum"])
    assert np.dot(points[1].vector["dense"], expected[0]) > 0.9999
    assert np.dot(points[2].vector["dense"], expected[1]) > 0.9999
    assert points[3].vector["bm25"].indices == bm25.document("cherry")[0].tolist()
    client.close()


@pytest.mark.parametrize(
    ("vector", "fragment"),
    [
        ({"dense": {"text": "x", "model": "nope/model"}}, "Unknown embedding model"),
        ({"dense": {"text": "", "model": MINILM}}, "empty"),
        ({"dense": {"text": "x", "model": "Qdrant/bm25"}}, "sparse"),
        ({"bm25": {"text": "x", "model": MINILM}}, "sparse"),
        ({"bm25": {"text": "x", "model": "Qdrant/bm25", "options": {"k": -1}}}, "negative"),
        ({"bm25": {"text": "x", "model": "Qdrant/bm25", "options": {"language": "fr"}}}, "fr"),
        ({"dense": {"text": "x"}}, "needs a model"),
        ({"dense": {"image": "x.png", "model": MINILM}}, "text Documents only"),
    ],
)
def test_qdrant_bad_documents_are_refused_and_nothing_is_written(server, vector, fragment) -> None:
    client = QdrantClient(url=server.url)
    if not client.collection_exists("texts_bad"):
        client.create_collection("texts_bad", **qdrant_config())
    body = {
        "points": [
            {"id": 1, "vector": {"dense": {"text": "fine", "model": MINILM}}},
            {"id": 2, "vector": vector},
        ]
    }
    answer = httpx.put(f"{server.url}/collections/texts_bad/points?wait=true", json=body)
    assert answer.status_code == 400, answer.text
    assert fragment in answer.json()["status"]["error"]
    assert client.count("texts_bad").count == 0
    query = httpx.post(
        f"{server.url}/collections/texts_bad/points/query",
        json={"query": next(iter(vector.values())), "using": next(iter(vector))},
    )
    assert query.status_code == 400, query.text
    client.close()
