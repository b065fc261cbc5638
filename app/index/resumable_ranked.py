"""A resumable query over a ranking made once: sparse sessions and fused (hybrid) ones.

A sparse query's exact scores cost its postings, and a fused order needs each list whole
(an RRF position or a DBSF normalisation depends on everything ranked above or beside it),
so these sessions rank every candidate when their engine starts, then serve each page as the
next `k` of that ranking. The state is empty: another worker, or a restarted server, ranks
again and skips every point whose write seqs the session row lists as returned. Ties are
broken by write seq, which every worker shares, so every worker ranks alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from app.models import PointId


@dataclass(frozen=True, slots=True)
class Ranking:
    """Points best first with their scores, and each point's write seqs (one per list it
    was ranked in: any of them marks it returned)."""

    ids: list[PointId]
    scores: list[float]
    seqs: list[tuple[int, ...]]


def single(ids: Sequence[PointId], scores: np.ndarray, seqs: np.ndarray) -> Ranking:
    """A ranking from one list, re-sorted by (score descending, seq)."""
    order = np.lexsort((seqs, -scores))
    seq_list = seqs[order].tolist()
    return Ranking(
        [ids[i] for i in order.tolist()], scores[order].tolist(), [(s,) for s in seq_list]
    )


def fused(
    parts: Sequence[Ranking], fuse: Callable[[list[list[tuple[PointId, float]]]], list]
) -> Ranking:
    """The fusion (`fuse`, e.g. RRF) of whole rankings; a point keeps the seqs of every list."""
    seqs: dict[PointId, tuple[int, ...]] = {}
    for part in parts:
        for pid, part_seqs in zip(part.ids, part.seqs, strict=True):
            seqs[pid] = seqs.get(pid, ()) + part_seqs
    lists = [list(zip(part.ids, part.scores, strict=True)) for part in parts]
    ranked = fuse(lists)
    return Ranking(
        [pid for pid, _ in ranked], [score for _, score in ranked], [seqs[pid] for pid, _ in ranked]
    )


class RankedQuery:
    """Pages of a ranking, less the points already returned (by any of their seqs)."""

    mode = "ranked"

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
            seqs = ranking.seqs[at]
            if self._returned.intersection(seqs):
                continue
            self._seqs[ranking.ids[at]] = seqs
            hits.append((ranking.ids[at], ranking.scores[at]))
        return hits

    def seqs_of(self, point_id: PointId) -> tuple[int, ...]:
        """The write seqs of a point this engine returned (what the session row records)."""
        return self._seqs.get(point_id, ())

    def state(self) -> bytes:
        return b""
