"""Recommend queries on a sparse vector: examples resolved into sparse vectors, and the
ranking of one sparse index by them (the part that runs in the CPU pool).

The arithmetic is qdrant-client local mode's (`local_collection.py`, `sparse_distances.py`),
the tests' oracle, step for step so that scores come out with the same bits:

- `average_vector`: the query `avg(pos) + avg(pos) - avg(neg)` (just `avg(pos)` without
  negatives) over the union of the examples' dimensions, sums taken in float64 in example
  order; a dimension missing from an example counts as 0 there, and one whose value comes
  to 0 stays in the query. It is then searched like any sparse query (IDF applies to it),
  so only points sharing a dimension with it are results, scored in float64.
- `best_score` / `sum_scores`: EVERY point that has the vector is scored, against every
  example: the dot product (float64, rounded to float32; 0 for a point sharing no
  dimension with the example; each example weighted by IDF under `modifier: idf`), then
  in float32 as for dense vectors (`app.index.recommend`): `sigm(best_pos)` if the best
  positive beats the best negative, else `-sigm(best_neg)`; or the sum over the positives
  minus the sum over the negatives. A point sharing nothing with any example thus scores
  `sigm(0) = 0.5` (positives only) or `-0.5` (with negatives) under `best_score`, and 0
  under `sum_scores`.

Example ids are looked up in `lookup_from` (a collection and sparse vector name) or the
searched collection and vector; ids of the searched collection are left out of the
results. `score_threshold` is strict; ties go to the older row.
"""

from __future__ import annotations

from collections.abc import Collection as Collection_
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import NotFound
from app.index.recommend import Strategy, sigmoid
from app.index.registry import IndexRegistry
from app.index.sparse import SparseIndex
from app.models import Collection, PointId, SparseVector
from app.services.catalog import Catalog
from app.services.points import canonical_id, check_vector
from app.services.recommend import Recommend, check_strategy
from app.services.sparse_search import Ranked, best

_EMPTY = SparseVector(np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.float32))


@dataclass(frozen=True, slots=True)
class Examples:
    """A sparse recommend query: resolved examples, the strategy, the ids to leave out."""

    positive: tuple[SparseVector, ...]
    negative: tuple[SparseVector, ...]
    strategy: Strategy
    exclude: frozenset[PointId]


def resolve(
    catalog: Catalog,
    registry: IndexRegistry,
    collection: Collection,
    namespace_id: int,
    using: str,
    recommend: Recommend,
) -> Examples:
    """Every example as a sparse vector (404 for an id without one), and the ids to exclude.
    `using` is a sparse vector of `collection`, searched in `namespace_id`."""
    check_strategy(recommend)
    source, source_vector, source_namespace = collection, using, namespace_id
    if recommend.lookup_from is not None:
        source = catalog.get(recommend.lookup_from.collection)
        source_vector = recommend.lookup_from.vector or using
        if source.id != collection.id:
            source_namespace = source.namespaces[""]
    exclude: set[PointId] = set()

    def vector_of(example: Any) -> SparseVector:
        if isinstance(example, SparseVector | list):  # a dense one: 400, the vector is sparse
            return check_vector(collection, using, example)
        point_id = canonical_id(example, source)
        check_vector(source, source_vector, _EMPTY)  # 400 if not a sparse name of `source`
        index = registry.get_sparse(source_namespace, source_vector)
        stored = index.get(point_id) if index is not None else None
        if stored is None:
            raise NotFound(f"Not found: No point with id {point_id} found")
        if source.id == collection.id:
            exclude.add(point_id)
        return SparseVector(*stored)

    return Examples(
        positive=tuple(vector_of(e) for e in recommend.positive),
        negative=tuple(vector_of(e) for e in recommend.negative),
        strategy=recommend.strategy,
        exclude=frozenset(exclude),
    )


def ranked(
    index: SparseIndex,
    examples: Examples,
    *,
    idf: bool,
    limit: int | None,
    score_threshold: float | None = None,
    among: Collection_[PointId] | None = None,
    exclude: Collection_[PointId] = (),
) -> Ranked:
    """The best `limit` points (None: every candidate) by the recommend query, scoring above
    `score_threshold`, among `among` if given, less `exclude` (`sparse_search.ranked`'s
    contract). Candidates: points sharing a dimension with the averaged query for
    `average_vector`; every point of the index for the scoring strategies."""
    if examples.strategy is Strategy.AVERAGE_VECTOR:
        dims, weights = average(examples.positive, examples.negative)
        rows, scores = index.scores(dims, weights, idf=idf, allowed=among, precise=True)
    else:
        rows = index.live_rows() if among is None else index.rows_of(among)
        scores = recommend_scores(index, examples, rows, idf)
    # float32 scores meet the threshold as float32, as local mode's comparison does
    return best(index, rows, scores, limit, score_threshold, exclude)


def average(
    positive: Sequence[SparseVector], negative: Sequence[SparseVector]
) -> tuple[np.ndarray, np.ndarray]:
    """The `average_vector` query as (uint32 dimensions ascending, float64 weights)."""
    examples = [*positive, *negative]
    if not examples:
        return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.float64)
    dims = np.unique(np.concatenate([e.indices for e in examples]))

    def mean(group: Sequence[SparseVector]) -> np.ndarray:
        total = np.zeros(len(dims), dtype=np.float64)
        for example in group:  # one example at a time: local mode's order of additions
            total[np.searchsorted(dims, example.indices)] += example.values.astype(np.float64)
        return total / len(group)

    mean_positive = mean(positive)
    if not negative:
        return dims, mean_positive
    return dims, mean_positive + mean_positive - mean(negative)


def recommend_scores(
    index: SparseIndex, examples: Examples, rows: np.ndarray, idf: bool
) -> np.ndarray:
    """`best_score` / `sum_scores` of each of `rows` (ascending), float32."""
    positive = similarities(index, examples.positive, rows, idf)
    negative = similarities(index, examples.negative, rows, idf)
    if examples.strategy is Strategy.SUM_SCORES:
        return positive.sum(axis=0) - negative.sum(axis=0)
    none = np.full(len(rows), -np.inf, dtype=np.float32)
    best_positive = positive.max(axis=0) if len(positive) else none
    best_negative = negative.max(axis=0) if len(negative) else none
    with np.errstate(invalid="ignore"):  # sigm(-inf) is never the chosen branch
        return np.where(
            best_positive > best_negative, sigmoid(best_positive), -sigmoid(best_negative)
        )


def similarities(
    index: SparseIndex, examples: Sequence[SparseVector], rows: np.ndarray, idf: bool
) -> np.ndarray:
    """(len(examples), len(rows)) float32 dot products, 0 where a row shares no dimension
    with the example (rows written since `rows` was taken are left out)."""
    out = np.zeros((len(examples), len(rows)), dtype=np.float32)
    for i, example in enumerate(examples):
        found, sums = index.scores(example.indices, example.values, idf=idf)
        at = np.searchsorted(rows, found)
        listed = at < len(rows)
        listed[listed] = rows[at[listed]] == found[listed]
        out[i, at[listed]] = sums[listed]  # float64 to float32, as local mode rounds a dot
    return out
