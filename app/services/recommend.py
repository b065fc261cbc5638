"""Recommend queries: examples (point ids or raw vectors) resolved into vectors.

What the examples mean follows Qdrant (and qdrant-client local mode, which the tests use as
the oracle): ids are looked up in `lookup_from` (another collection and/or vector name) or in
the searched collection; ids of the searched collection are left out of the results; the
`average_vector` strategy becomes one query vector, `avg(pos) + avg(pos) - avg(neg)`, searched
like any other; `best_score` and `sum_scores` score candidates against every example
(`app.index.recommend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import BadRequest, NotFound
from app.index.recommend import RecoScorer, Strategy
from app.index.registry import IndexRegistry
from app.models import Collection, PointId, SparseVector
from app.services.catalog import Catalog
from app.services.points import canonical_id, check_vector


@dataclass(frozen=True, slots=True)
class LookupFrom:
    """Where example ids are looked up: a collection (name or alias) and a vector name."""

    collection: str
    vector: str | None = None


@dataclass(frozen=True, slots=True)
class Recommend:
    """A recommend query as a dialect parsed it: examples are lists (vectors) or ids."""

    positive: tuple[Any, ...] = ()
    negative: tuple[Any, ...] = ()
    strategy: Strategy = Strategy.AVERAGE_VECTOR
    lookup_from: LookupFrom | None = None


@dataclass(frozen=True, slots=True)
class Examples:
    """Resolved examples (float64 rows) and the ids to leave out of the results."""

    positive: np.ndarray
    negative: np.ndarray
    exclude: frozenset[PointId]

    def average(self) -> np.ndarray:
        """The `average_vector` query: `avg(pos) + avg(pos) - avg(neg)`, or `avg(pos)`."""
        mean = self.positive.mean(axis=0)
        if len(self.negative):
            return mean + mean - self.negative.mean(axis=0)
        return mean


def check_strategy(recommend: Recommend) -> None:
    """The example counts each strategy needs (negative-only is fine for the scoring ones)."""
    if recommend.strategy is Strategy.AVERAGE_VECTOR and not recommend.positive:
        raise BadRequest("Wrong input: the average_vector strategy needs a positive example")
    if not recommend.positive and not recommend.negative:
        raise BadRequest("Wrong input: no positive or negative examples given")


def check_vector_name(collection: Collection, name: str) -> None:
    """Qdrant's `Not existing vector name` error for a name the collection lacks."""
    if name not in collection.config.vectors:
        check_vector(collection, name, [])  # raises the unknown-name error


def stored_vector(
    registry: IndexRegistry, collection: Collection, using: str, point_id: PointId
) -> np.ndarray:
    """The stored vector `using` of a point of a Qdrant collection (404 if it has none)."""
    check_vector_name(collection, using)
    segment = registry.get(collection.namespaces[""], using)
    vector = segment.vector(point_id) if segment is not None else None
    if vector is None:
        raise NotFound(f"Not found: No point with id {point_id} found")
    return vector


def resolve(
    catalog: Catalog,
    registry: IndexRegistry,
    collection: Collection,
    using: str,
    recommend: Recommend,
) -> Examples:
    """Every example as a vector of the searched vector's size, plus the ids to exclude."""
    check_strategy(recommend)
    check_vector_name(collection, using)
    source, source_vector = collection, using
    if recommend.lookup_from is not None:
        source = catalog.get(recommend.lookup_from.collection)
        source_vector = recommend.lookup_from.vector or using
    exclude: set[PointId] = set()

    def vector_of(example: Any) -> np.ndarray:
        if isinstance(example, list | SparseVector):  # a sparse one: the conversion error
            return check_vector(collection, using, example).astype(np.float64)
        point_id = canonical_id(example, source)
        if source.id == collection.id:
            exclude.add(point_id)
        found = stored_vector(registry, source, source_vector, point_id)
        return check_vector(collection, using, found).astype(np.float64)

    size = collection.config.vectors[using].size
    return Examples(
        positive=_rows([vector_of(e) for e in recommend.positive], size),
        negative=_rows([vector_of(e) for e in recommend.negative], size),
        exclude=frozenset(exclude),
    )


def scorer(
    collection: Collection, using: str, examples: Examples, strategy: Strategy
) -> RecoScorer:
    """The `best_score` / `sum_scores` scorer of resolved examples."""
    distance = collection.config.vectors[using].distance
    return RecoScorer(examples.positive, examples.negative, strategy, distance)


def _rows(vectors: Sequence[np.ndarray], size: int) -> np.ndarray:
    return np.stack(vectors) if vectors else np.zeros((0, size), dtype=np.float64)
