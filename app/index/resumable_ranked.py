"""A resumable query over a ranking made once: sparse sessions and fused (hybrid) ones.

A sparse query's exact scores cost its postings, and a fused order needs each list whole
(an RRF position or a DBSF normalisation depends on everything ranked above or beside it),
so these sessions rank every candidate when their engine starts, then serve each page as the
next `k` of that ranking. The state is empty: another worker, or a restarted server, ranks
again and skips every point whose write seqs the session row lists as returned. Ties are
broken by write seq, which every worker shares, so every worker ranks alike.

Rankings are numpy arrays, fused without a Python step per point but the one that gives
each point id a number: at 100,000 points a step per point and list cost more than the
exact dense scan itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.index.fusion import dbsf_normalise
from app.models import PointId

ABSENT = -1  # the seq of a point in a list it is not in


@dataclass(frozen=True, slots=True)
class Ranking:
    """Points best first: ids (an object array), float64 scores, and the write seq of each
    point's vector in each list ranked (a row per point, a column per list, `ABSENT` where
    it is not in one); any of them marks the point returned."""

    ids: np.ndarray
    scores: np.ndarray
    seqs: np.ndarray


def single(ids: Sequence[PointId], scores: np.ndarray, seqs: np.ndarray) -> Ranking:
    """A ranking from one list, re-sorted by (score descending, seq)."""
    order = np.lexsort((seqs, -scores))
    return Ranking(_objects(ids)[order], scores[order], seqs[order, None])


def fused(
    parts: Sequence[Ranking], method: str, k: int, weights: Sequence[float] | None
) -> Ranking:
    """The fusion of whole rankings, as `app.index.fusion` computes it: `rrf` (constant `k`,
    optional weight per list) or `dbsf`; ties keep the order of first appearance."""
    codes, ids = _codes(np.concatenate([part.ids for part in parts]))
    contributions = np.concatenate(
        [_contributions(part, method, k, _weight(weights, i)) for i, part in enumerate(parts)]
    )
    scores = np.bincount(codes, contributions, len(ids))  # summed in list order, as a dict
    seqs = np.full((len(ids), len(parts)), ABSENT, dtype=np.int64)
    start = 0
    for column, part in enumerate(parts):
        seqs[codes[start : start + len(part.ids)], column] = part.seqs[:, 0]
        start += len(part.ids)
    order = np.lexsort((np.arange(len(ids)), -scores))  # codes number first appearances
    return Ranking(ids[order], scores[order], seqs[order])


def _contributions(part: Ranking, method: str, k: int, weight: float) -> np.ndarray:
    if method == "dbsf":
        return np.asarray(dbsf_normalise(part.scores.tolist()), dtype=np.float64)
    if weight <= 0:
        return np.zeros(len(part.ids))
    positions = np.arange(len(part.ids), dtype=np.float64)
    return 1 / ((positions + 1.0) / weight + k - 1.0)  # `rrf_contribution`, element-wise


def _weight(weights: Sequence[float] | None, position: int) -> float:
    return 1.0 if weights is None else float(weights[position])


def _codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A number per distinct id, in order of first appearance, and those ids. Ids that are
    all integers (Qdrant's numbers) are numbered by numpy; others through a dict."""
    try:
        if set(map(type, ids.tolist())) != {int}:  # "01" and "1" are two Upstash ids
            raise TypeError
        numbers = ids.astype(np.int64)
    except (OverflowError, TypeError):  # strings, UUIDs, ids past 2**63
        seen: dict[PointId, int] = {}
        codes = np.fromiter(
            (seen.setdefault(pid, len(seen)) for pid in ids.tolist()), np.int64, len(ids)
        )
        return codes, _objects(list(seen))
    _, first, inverse = np.unique(numbers, return_index=True, return_inverse=True)
    appearance = np.argsort(first)  # distinct ids in order of first appearance
    code_of = np.empty(len(first), dtype=np.int64)
    code_of[appearance] = np.arange(len(first))
    return code_of[inverse], ids[first[appearance]]


def _objects(ids: Sequence[PointId]) -> np.ndarray:
    """Ids as an object array (ints stay Python ints, strings stay strings)."""
    array = np.empty(len(ids), dtype=object)
    array[:] = list(ids)
    return array


class RankedQuery:
    """Pages of a ranking, less the points already returned (by any of their seqs)."""

    mode = "ranked"
    moved = False  # its state is the returned seqs alone, kept by the session row

    def __init__(self, ranking: Ranking, returned: np.ndarray) -> None:
        self._ranking = ranking
        self._returned = {int(seq) for seq in returned.tolist()}
        self._cursor = 0
        self._seqs: dict[PointId, tuple[int, ...]] = {}

    def next(self, k: int) -> list[tuple[PointId, float]]:
        """Up to k next (id, score), best first; [] once the ranking is exhausted."""
        ranking, hits = self._ranking, []
        while len(hits) < k and self._cursor < len(ranking.ids):
            at = self._cursor
            self._cursor += 1
            seqs = tuple(seq for seq in ranking.seqs[at].tolist() if seq != ABSENT)
            if self._returned.intersection(seqs):
                continue
            point_id = ranking.ids[at]
            self._seqs[point_id] = seqs
            hits.append((point_id, float(ranking.scores[at])))
        return hits

    def seqs_of(self, point_id: PointId) -> tuple[int, ...]:
        """The write seqs of a point this engine returned (what the session row records)."""
        return self._seqs.get(point_id, ())

    def state(self) -> bytes:
        return b""
