"""Recommend through the official client against local mode (the oracle), on the exact path
and on the graph path, plus the legacy `points/recommend[/batch]` endpoints and the errors.

`reco` has three named vectors (Cosine, Dot, Euclid) and 600 points; `reco_src` (Cosine,
Dot) is the `lookup_from` collection. A second server with a low exact threshold serves
`reco_graph` (3000 points) from hnswlib graphs.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from tests.qdrant_oracle import (
    NAMES,
    assert_same,
    assert_same_records,
    build,
    clients,
    random_filter,
)

N, DIM = 600, 8
STRATEGIES = (
    None,
    models.RecommendStrategy.AVERAGE_VECTOR,
    models.RecommendStrategy.BEST_SCORE,
    models.RecommendStrategy.SUM_SCORES,
)
SCORING = (models.RecommendStrategy.BEST_SCORE, models.RecommendStrategy.SUM_SCORES)
THRESHOLDS = {  # loose enough to keep some results, strict enough to cut some
    ("cos", None): 0.3,
    ("dot", None): 1.0,
    ("euc", None): 3.5,
    ("cos", "best_score"): 0.6,
    ("dot", "best_score"): 0.7,
    ("cos", "sum_scores"): 0.2,
    ("dot", "sum_scores"): 1.0,
}


@pytest.fixture(scope="module")
def pair(server):
    remote, local = clients(server.url)
    build((remote, local), "reco", N, DIM, seed=11)
    build((remote, local), "reco_src", 40, DIM, seed=12, names=("cos", "dot"))
    yield remote, local
    remote.close()


def example(rng: np.random.Generator, count: int = N) -> int | list[float]:
    if rng.random() < 0.5:
        return int(rng.integers(count))
    return rng.standard_normal(DIM).round(4).tolist()


def random_query(rng: np.random.Generator, using: str) -> dict:
    """Keyword arguments of one random `query_points` recommend call."""
    strategy = STRATEGIES[int(rng.integers(len(STRATEGIES)))]
    scoring = strategy in SCORING
    positives = int(rng.integers(0 if scoring else 1, 4))
    negatives = int(rng.integers(0 if positives else 1, 3))
    lookup = None
    if rng.random() < 0.2:
        vector = str(rng.choice(["cos", "dot"])) if using == "euc" or rng.random() < 0.5 else None
        lookup = models.LookupLocation(collection="reco_src", vector=vector)
    count = 40 if lookup else N
    args = {
        "query": models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[example(rng, count) for _ in range(positives)],
                negative=[example(rng, count) for _ in range(negatives)],
                strategy=strategy,
            )
        ),
        "using": using,
        "lookup_from": lookup,
        "limit": int(rng.integers(1, 11)),
        "offset": int(rng.integers(0, 4)) if rng.random() < 0.3 else 0,
        "with_payload": [True, False, ["city", "rank"]][int(rng.integers(3))],
        "with_vectors": [False, True, ["cos"]][int(rng.integers(3))],
    }
    key = (using, strategy.value if scoring else None)
    if key in THRESHOLDS and rng.random() < 0.25:
        args["score_threshold"] = THRESHOLDS[key]
    return args


def test_recommend_matches_local_mode(pair) -> None:
    """Every strategy, ids and raw vectors, lookup_from, offsets, thresholds, filters."""
    remote, local = pair
    rng = np.random.default_rng(2024)
    answered = 0
    for case in range(240):
        args = random_query(rng, NAMES[case % 3])
        args["query_filter"] = random_filter(rng)
        got = remote.query_points("reco", **args).points
        want = local.query_points("reco", **args).points
        assert_same_records(got, want, f"case {case}: {args}")
        answered += bool(want)
    assert answered > 200  # the cases are not vacuous


def test_negative_only_best_score_ranks_least_similar_first(pair) -> None:
    remote, local = pair
    for using in NAMES:
        query = models.RecommendQuery(
            recommend=models.RecommendInput(
                negative=[3, 17], strategy=models.RecommendStrategy.BEST_SCORE
            )
        )
        got = remote.query_points("reco", query=query, using=using, limit=10).points
        want = local.query_points("reco", query=query, using=using, limit=10).points
        assert_same(got, want, using)
        assert all(p.score < 0 for p in got)
        assert {3, 17}.isdisjoint(p.id for p in got)


def as_request(args: dict) -> models.QueryRequest:
    """`query_points` keyword arguments as a QueryRequest (its field names differ)."""
    args = dict(args)
    args["with_vector"] = args.pop("with_vectors")
    args["filter"] = args.pop("query_filter", None)
    return models.QueryRequest(**args)


def test_query_batch_mixes_nearest_recommend_and_listing(pair) -> None:
    remote, local = pair
    rng = np.random.default_rng(5)
    requests = [
        models.QueryRequest(query=rng.standard_normal(DIM).tolist(), using="dot", limit=4),
        models.QueryRequest(query=7, using="euc", limit=3, with_payload=True),
        as_request(random_query(rng, "cos")),
        as_request(random_query(rng, "euc")),
        models.QueryRequest(
            filter=models.Filter(
                must=[models.FieldCondition(key="city", match=models.MatchValue(value="rome"))]
            ),
            limit=5,
            offset=2,
            with_payload=True,
        ),
    ]
    got = remote.query_batch_points("reco", requests=requests)
    want = local.query_batch_points("reco", requests=requests)
    for position, (a, b) in enumerate(zip(got, want, strict=True)):
        assert_same_records(a.points, b.points, f"request {position}")


def test_legacy_recommend_endpoints(pair, server) -> None:
    """`points/recommend` and `points/recommend/batch` (clients <= 1.15, raw HTTP)."""
    _, local = pair
    bodies = [
        {"positive": [1, 2], "negative": [3], "limit": 5, "using": "cos", "with_payload": True},
        {"positive": [4], "strategy": "best_score", "limit": 6, "using": "euc", "offset": 1},
        {"negative": [5], "strategy": "sum_scores", "limit": 3, "using": "dot"},
        {
            "positive": [[0.5] * DIM, 9],
            "limit": 4,
            "using": "dot",
            "filter": {"must": [{"key": "rank", "range": {"gte": 2}}]},
            "lookup_from": {"collection": "reco_src", "vector": "dot"},
        },
    ]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        single = [http.post("/collections/reco/points/recommend", json=b) for b in bodies]
        batch = http.post("/collections/reco/points/recommend/batch", json={"searches": bodies})
    assert batch.status_code == 200, batch.text
    for position, body in enumerate(bodies):
        assert single[position].status_code == 200, single[position].text
        want = local.query_points(
            "reco",
            query=models.RecommendQuery(
                recommend=models.RecommendInput(
                    positive=body.get("positive"),
                    negative=body.get("negative"),
                    strategy=body.get("strategy"),
                )
            ),
            using=body["using"],
            limit=body["limit"],
            offset=body.get("offset", 0),
            query_filter=models.Filter(**body["filter"]) if "filter" in body else None,
            lookup_from=models.LookupLocation(**body["lookup_from"])
            if "lookup_from" in body
            else None,
        ).points
        for got in (single[position].json()["result"], batch.json()["result"][position]):
            assert [p["id"] for p in got] == [p.id for p in want]
            np.testing.assert_allclose(
                [p["score"] for p in got], [p.score for p in want], atol=1e-4
            )
        assert ("payload" in single[position].json()["result"][0]) == bool(body.get("with_payload"))


def error_of(call) -> tuple[int, str]:
    with pytest.raises(UnexpectedResponse) as caught:
        call()
    return caught.value.status_code, caught.value.content.decode()


def test_errors_use_the_reference_texts(pair) -> None:
    remote, _ = pair

    def recommend(**kwargs):
        positive = kwargs.pop("positive", [1])
        strategy = kwargs.pop("strategy", None)
        query = models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=positive, negative=kwargs.pop("negative", None), strategy=strategy
            )
        )
        return lambda: remote.query_points("reco", query=query, **kwargs)

    nowhere = models.LookupLocation(collection="nowhere")
    status, text = error_of(recommend(using="cos", lookup_from=nowhere))
    assert status == 404 and "Not found: Collection `nowhere`" in text
    status, text = error_of(recommend(using="missing"))
    assert status == 400 and "Not existing vector name" in text
    lookup = models.LookupLocation(collection="reco_src", vector="euc")
    status, text = error_of(recommend(using="cos", lookup_from=lookup))
    assert status == 400 and "Not existing vector name" in text
    status, text = error_of(recommend(using="cos", positive=[], negative=[2]))
    assert status == 400 and "positive" in text
    status, text = error_of(recommend(using="cos", positive=[10_000]))
    assert status == 404 and "10000" in text
    status, text = error_of(recommend(using="cos", positive=[[1.0, 2.0]]))
    assert status == 400 and "dimension" in text


# ------------------------------------------------------------------------- the graph path

GRAPH_N, GRAPH_DIM = 3000, 16


def wait_green(url: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/collections/{name}").json()["result"]
        if info["status"] == "green" and info["indexed_vectors_count"] > 0:
            return
        time.sleep(0.2)
    raise TimeoutError(name)


def test_graph_path_keeps_every_strategy_correct(server_factory) -> None:
    """With the exact threshold at 300, 3000 points are searched through the graphs; every
    strategy keeps recall@10 >= 0.95 against local mode, and the plan header says hnsw."""
    graph_server = server_factory(env={"WAYPOINT_EXACT_THRESHOLD": "300"})
    remote, local = clients(graph_server.url)
    build((remote, local), "reco_graph", GRAPH_N, GRAPH_DIM, seed=3)
    wait_green(graph_server.url, "reco_graph")
    rng = np.random.default_rng(99)
    recalls: dict[str, list[float]] = {}
    for case in range(90):
        using = NAMES[case % 3]
        strategy = STRATEGIES[1 + (case // 3) % 3]
        positives = [int(rng.integers(GRAPH_N)) for _ in range(int(rng.integers(1, 4)))]
        negatives = [int(rng.integers(GRAPH_N)) for _ in range(int(rng.integers(0, 3)))]
        if strategy is not models.RecommendStrategy.AVERAGE_VECTOR and case % 4 == 0:
            positives, negatives = [], negatives or [int(rng.integers(GRAPH_N))]
        query = models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=positives, negative=negatives, strategy=strategy
            )
        )
        got = remote.query_points("reco_graph", query=query, using=using, limit=10).points
        want = local.query_points("reco_graph", query=query, using=using, limit=10).points
        found = {p.id for p in got} & {p.id for p in want}
        recalls.setdefault(f"{strategy.value}/{using}", []).append(len(found) / len(want))
        scores = {p.id: p.score for p in want}
        for point in got:
            if point.id in scores:
                assert abs(point.score - scores[point.id]) < 1e-4
    for key, values in recalls.items():
        assert np.mean(values) >= 0.95, f"{key}: recall@10 {np.mean(values):.3f}"
    body = {"query": {"recommend": {"positive": [1], "strategy": "best_score"}}, "using": "cos"}
    response = httpx.post(f"{graph_server.url}/collections/reco_graph/points/query", json=body)
    assert response.headers["waypoint-plan"] == "hnsw"
    remote.close()
