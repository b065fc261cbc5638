"""Ranking one sparse vector's inverted index: the pieces of a sparse search that run in
the CPU pool (scoring, ordering) and the filter's confirmation, which asks PostgreSQL.

A filtered sparse search scores every point sharing a dimension with the query (that costs
the query's postings, not the collection), then confirms the best of them against the
filter in widening chunks: a selective filter costs a few SQL round trips over candidate
ids, never a listing of every match.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import numpy as np

from app.index.sparse import SparseIndex, top_k
from app.models import PointId, SparseVector

FIRST_CHUNK = 4  # the first confirmation asks about this many candidates per result wanted

Confirm = Callable[[list[PointId]], Awaitable[set[PointId]]]


@dataclass(frozen=True, slots=True)
class Ranked:
    """Candidates best first (ties to the older row): ids, scores and write seqs."""

    ids: list[PointId]
    scores: list[float]
    seqs: list[int]

    def head(self, k: int) -> Ranked:
        return Ranked(self.ids[:k], self.scores[:k], self.seqs[:k])


def ranked(
    index: SparseIndex,
    query: SparseVector,
    *,
    idf: bool,
    limit: int | None,
    score_threshold: float | None = None,
    among: Collection[PointId] | None = None,
    exclude: Collection[PointId] = (),
    weights: np.ndarray | None = None,
) -> Ranked:
    """The best `limit` points (None: all that share a dimension with the query) scoring
    above `score_threshold` (strict, as Qdrant), among `among` if given, less `exclude`.

    `weights` (float64, one per query index) replace the query's float32 values: a
    session's query with the IDF weighting of its start, which plain queries compute in
    float64 too."""
    values = query.values if weights is None else weights
    rows, scores = index.scores(
        query.indices, values, idf=idf, allowed=among, precise=weights is not None
    )
    return best(index, rows, scores, limit, score_threshold, exclude)


def best(
    index: SparseIndex,
    rows: np.ndarray,
    scores: np.ndarray,
    limit: int | None,
    score_threshold: float | None,
    exclude: Collection[PointId],
) -> Ranked:
    """The best `limit` of scored rows (None: all) above `score_threshold`, less
    `exclude`, as ranked points."""
    keep = np.ones(len(rows), dtype=bool)
    if score_threshold is not None:
        keep &= scores > score_threshold
    if exclude:
        keep &= ~np.isin(rows, index.rows_of(exclude))
    rows, scores = rows[keep], scores[keep]
    order = top_k(rows, scores, len(rows) if limit is None else limit)
    rows, scores = rows[order], scores[order]
    return Ranked(index.point_ids(rows), scores.tolist(), index.rows_written_by(rows).tolist())


async def confirmed(candidates: Ranked, k: int, confirm: Confirm) -> Ranked:
    """The first `k` candidates `confirm` accepts, asking about chunks four times wider each
    time (the first `FIRST_CHUNK * k`)."""
    kept: list[int] = []
    start, width = 0, max(FIRST_CHUNK * k, 16)
    while len(kept) < k and start < len(candidates.ids):
        chunk = candidates.ids[start : start + width]
        accepted = await confirm(chunk)
        kept.extend(start + i for i, pid in enumerate(chunk) if pid in accepted)
        start, width = start + width, width * 4
    kept = kept[:k]
    return Ranked(
        [candidates.ids[i] for i in kept],
        [candidates.scores[i] for i in kept],
        [candidates.seqs[i] for i in kept],
    )
