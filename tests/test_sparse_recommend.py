"""Sparse recommend scoring (`app.services.sparse_recommend`) on hand-computed examples; the
comparison with qdrant-client local mode is in tests/test_qdrant_sparse.py."""

from __future__ import annotations

import numpy as np
import pytest

from app.index.recommend import Strategy, sigmoid
from app.index.sparse import SparseIndex
from app.models import SparseVector
from app.services.sparse_recommend import Examples, average, ranked


def vector(pairs: dict[int, float]) -> SparseVector:
    return SparseVector.parse(list(pairs), list(pairs.values()))


def examples(strategy: Strategy, positive=(), negative=(), exclude=()) -> Examples:
    return Examples(
        tuple(vector(p) for p in positive),
        tuple(vector(n) for n in negative),
        strategy,
        frozenset(exclude),
    )


@pytest.fixture
def index() -> SparseIndex:
    index = SparseIndex()
    index.upsert("a", [1], [1.0], 1)
    index.upsert("b", [5], [1.0], 2)  # shares no dimension with any example below
    index.upsert("c", [2], [2.0], 3)
    return index


def scored(index: SparseIndex, query: Examples, **options) -> list[tuple[str, float]]:
    options = {"idf": False, "limit": None, **options}
    found = ranked(index, query, **options)
    return list(zip(found.ids, found.scores, strict=True))


def test_average_is_twice_the_positive_mean_less_the_negative_mean() -> None:
    positive = [vector({1: 1.0, 2: 2.0}), vector({2: 4.0, 3: 1.0})]
    negative = [vector({3: 1.0, 4: 2.0})]
    dims, weights = average(positive, negative)
    assert dims.tolist() == [1, 2, 3, 4]
    assert weights.tolist() == [1.0, 6.0, 0.0, -2.0]  # a dimension that cancels stays
    dims, weights = average(positive, [])
    assert dims.tolist() == [1, 2, 3] and weights.tolist() == [0.5, 3.0, 0.5]


def test_average_vector_scores_only_points_sharing_a_dimension(index) -> None:
    query = examples(Strategy.AVERAGE_VECTOR, [{1: 2.0}], [{2: 1.0}])  # [1: 4, 2: -1]
    assert scored(index, query) == [("a", 4.0), ("c", -2.0)]


def test_best_score_scores_every_point(index) -> None:
    sigm2 = float(sigmoid(np.float32(2.0)))  # 0.8333333, in float32 as local mode
    query = examples(Strategy.BEST_SCORE, [{1: 2.0}], [{2: 1.0}])
    assert scored(index, query) == [("a", sigm2), ("b", -0.5), ("c", -sigm2)]
    # positives only: sharing nothing is similarity 0, sigm(0) = 0.5; ties to the older row
    query = examples(Strategy.BEST_SCORE, [{1: 2.0}])
    assert scored(index, query) == [("a", sigm2), ("b", 0.5), ("c", 0.5)]
    query = examples(Strategy.BEST_SCORE, negative=[{2: 1.0}])
    assert scored(index, query) == [("a", -0.5), ("b", -0.5), ("c", -sigm2)]


def test_sum_scores_scores_every_point(index) -> None:
    query = examples(Strategy.SUM_SCORES, [{1: 2.0}, {1: 1.0, 5: 1.0}], [{2: 1.0}])
    assert scored(index, query) == [("a", 3.0), ("b", 1.0), ("c", -2.0)]
    assert scored(index, examples(Strategy.SUM_SCORES, negative=[{9: 1.0}])) == [
        ("a", 0.0),
        ("b", 0.0),
        ("c", 0.0),
    ]


def test_threshold_limit_among_and_exclude(index) -> None:
    query = examples(Strategy.BEST_SCORE, [{1: 2.0}], [{2: 1.0}])
    assert [pid for pid, _ in scored(index, query, score_threshold=-0.5)] == ["a"]  # strict
    assert [pid for pid, _ in scored(index, query, limit=2)] == ["a", "b"]
    assert [pid for pid, _ in scored(index, query, among={"b", "c", "gone"})] == ["b", "c"]
    assert [pid for pid, _ in scored(index, query, exclude={"a"})] == ["b", "c"]
    found = ranked(index, query, idf=False, limit=1)
    assert found.seqs == [1]
    index.delete("a")  # points without the vector are never scored
    assert [pid for pid, _ in scored(index, query)] == ["b", "c"]
