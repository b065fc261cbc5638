"""Scoring of recommend queries with the `best_score` and `sum_scores` strategies.

The arithmetic is Qdrant's (and qdrant-client local mode's, `local/distances.py`): every
example is compared with the "core" similarity — the dot product for Dot, the cosine for
Cosine, `-sum((v - e)^2)` for Euclid — in float32, then

- `best_score`: `sigm(best_pos)` where the best positive beats the best negative, else
  `-sigm(best_neg)`, with `sigm(x) = 0.5 * (x / (1 + |x|) + 1)`; bigger is better;
- `sum_scores`: the sum over the positives minus the sum over the negatives.

Both are bigger-is-better whatever the distance, so their `score_threshold` keeps `score > t`.

For the graph, a scorer also says which nearest-neighbour queries find its best points:
`sum_scores` is one linear (Cosine, Dot) or quadratic (Euclid) function of the candidate,
equivalent to a single nearest query; `best_score` needs one query per example and a bound
on what the queries missed (see `Segment.recommend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from app.models import Distance


class Strategy(StrEnum):
    AVERAGE_VECTOR = "average_vector"
    BEST_SCORE = "best_score"
    SUM_SCORES = "sum_scores"


def core_similarity(
    matrix: np.ndarray, example: np.ndarray, distance: Distance, fast: bool = False
) -> np.ndarray:
    """Similarity of every row of `matrix` (stored vectors) to one example, as float32.

    Precise (the default) computes in float64 like local mode, for the few rows that are
    returned; `fast` uses float32 BLAS without copies, to pick candidates in a scan.
    """
    kind = np.float32 if fast else np.float64
    rows = matrix.astype(kind, copy=False)
    vector = example.astype(kind, copy=False)
    if distance is Distance.EUCLID:
        if fast:
            squares = np.einsum("ij,ij->i", rows, rows) - 2 * (rows @ vector) + vector @ vector
            return -squares
        return (-((rows - vector) ** 2).sum(axis=1)).astype(np.float32)
    if distance is Distance.COSINE:
        norm = np.linalg.norm(vector)
        vector = vector / norm if norm > 0 else vector
    return (rows @ vector).astype(np.float32, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Qdrant's scaled fast sigmoid: maps any similarity into (0, 1) keeping its order."""
    x = np.asarray(x, dtype=np.float32)
    return (np.float32(0.5) * (x / (np.float32(1) + np.abs(x)) + np.float32(1))).astype(np.float32)


@dataclass(frozen=True, slots=True)
class RecoScorer:
    """The examples of one recommend query (float64 rows, as resolved) and its strategy."""

    positive: np.ndarray  # (P, dim), P may be 0
    negative: np.ndarray  # (N, dim), N may be 0
    strategy: Strategy
    distance: Distance

    def similarities(self, matrix: np.ndarray, examples: np.ndarray, fast: bool) -> np.ndarray:
        """(len(examples), len(matrix)) float32 core similarities."""
        out = np.empty((len(examples), len(matrix)), dtype=np.float32)
        for i, example in enumerate(examples):
            out[i] = core_similarity(matrix, example, self.distance, fast)
        return out

    def scores(self, matrix: np.ndarray, fast: bool = False) -> np.ndarray:
        """Qdrant's recommend score of every row of `matrix` (float32, bigger is better)."""
        pos = self.similarities(matrix, self.positive, fast)
        neg = self.similarities(matrix, self.negative, fast)
        if self.strategy is Strategy.SUM_SCORES:
            return pos.sum(axis=0, dtype=np.float32) - neg.sum(axis=0, dtype=np.float32)
        none = np.full(len(matrix), -np.inf, dtype=np.float32)
        best_pos = pos.max(axis=0) if len(pos) else none
        best_neg = neg.max(axis=0) if len(neg) else none
        with np.errstate(invalid="ignore"):  # sigm(-inf) is never the chosen branch
            return np.where(best_pos > best_neg, sigmoid(best_pos), -sigmoid(best_neg))

    def sum_query(self) -> np.ndarray | None:
        """One vector whose nearest neighbours (in the graph's metric) rank as `sum_scores`.

        Cosine and Dot: the sum is `x · w` with `w = Σ p - Σ n` (examples unit length for
        Cosine), a maximum-inner-product query. Euclid: the sum is `-(P-N)·|x - c|² + const`
        with `c = (Σ p - Σ n) / (P - N)`, a nearest query when P > N; otherwise the best
        points are the farthest ones, which a graph cannot search (None: scan exactly).
        """
        pos, neg = self._unit(self.positive), self._unit(self.negative)
        direction = pos.sum(axis=0) - neg.sum(axis=0)
        if self.distance is not Distance.EUCLID:
            return direction
        surplus = len(self.positive) - len(self.negative)
        return direction / surplus if surplus > 0 else None

    def probes(self) -> list[np.ndarray] | None:
        """`best_score` graph queries: the positives, whose nearest neighbours hold the best
        points. Negative-only, the best points are the least similar to every negative, a
        farthest-point search a proximity graph answers badly (recall 0.67 on MiniLM text
        embeddings through `-n`) or not at all (Euclid): None, scan exactly.
        """
        return list(self.positive) if len(self.positive) else None

    def _unit(self, examples: np.ndarray) -> np.ndarray:
        if self.distance is not Distance.COSINE:
            return examples
        norms = np.linalg.norm(examples, axis=1, keepdims=True)
        return examples / np.where(norms == 0, 1, norms)
