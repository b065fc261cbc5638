"""Fusion of ranked result lists for hybrid queries, computed the way each real system does.

Every function takes `lists`: each list holds `(point_id, score)` pairs, best first, and a
point id is an int or a string. It returns one list of `(point_id, fused_score)`, best first.
Arithmetic is float64 in the originals' order of operations. The wire layer rounds scores
for the wire: Upstash sends float32, as its SDK tests show with `0.033_333_335`.

**Score direction.** RRF reads positions only. DBSF reads scores and treats bigger as
better. qdrant-client 1.20 local mode passes raw Euclid/Manhattan distances to DBSF, so
identical Euclid prefetches fuse farthest first. qdrant/qdrant#10611 reports the same for
server 1.19, and the fixes are still open pull requests. This module does not guess the
metric. To match local mode, pass each prefetch's scores as it returned them. To rank
sensibly instead, negate the distances first.

**Qdrant** (`qdrant_client/hybrid/fusion.py`, checked by tests/test_fusion.py):
- RRF: a point at 0-based position `pos` of a list with weight `w` gets
  `1 / ((pos + 1) / w + k - 1)` from it, which is `1 / (pos + k)` at `w = 1`. Default k = 2,
  and the server rejects k < 1. Contributions are summed per point. A list with `w <= 0`
  adds 0.0, but its points still appear in the output (with score 0.0 if they are in no
  other list).
- DBSF: each non-empty list is normalised on its own as `(s - (mu - 3 sd)) / (6 sd)`. `sd` is
  the sample standard deviation (n - 1), in both local mode and the server. A one-point list,
  or a list with sd = 0, gives 0.5 to each point. Scores are not clamped: beyond 3 sd they
  leave [0, 1]. Normalised scores are summed per point.
- Ties keep the order of first appearance: all of list 0, then list 1, and so on (a stable
  sort). The server breaks ties in hash order and computes in float32; we follow local mode.

**Upstash** (docs `vector/features/hybridindexes.mdx`; no server source is public):
- RRF: `1 / (rank + 60)` with a 0-based rank. Evidence: upstash/vector-js
  `query-many/index.test.ts` expects 0.033_333_335 = 2/60 for a point first in both lists,
  and 0.032_795_697 = 1/60 + 1/62 for a point first in one list and third in the other. A
  1-based rank would give 2/61 and 1/61 + 1/63. This is Qdrant's RRF with k = 60.
- DBSF: `(s - (mu - 3 sd)) / ((mu + 3 sd) - (mu - 3 sd))`. No source says whether sd is the
  sample or the population deviation, or what happens to one point or sd = 0. We chose
  Qdrant's answers (sample sd, 0.5), so both dialects share one implementation.
- Tie order is not documented, so we use first appearance. The caller passes the dense list
  first.

**Resumable hybrid queries.** Here each input list arrives in descending score order, one
chunk at a time, and pages must come out in fused order.
- RRF: a position's contribution does not depend on the list's length, so the fusion of the
  complete streams is well defined. `rrf_final_prefix` returns the head of it that nothing
  unseen can change. This is the no-random-access threshold algorithm:
  - a point is exact once it has been seen in every list that is not exhausted;
  - any unseen point is bounded by the sum, over the open lists, of the contribution at each
    list's next rank;
  - a partly seen point is bounded by its seen contributions plus that frontier term for
    each open list it is missing from;
  - the head stops at the first exact point that some bound could still reach.

  To fill a page, fetch more from the open list whose frontier term is largest, call again,
  and emit the new final items. A session must store each list's next rank and, for each
  seen point, the lists and positions where it was seen. To fuse Qdrant prefetches cut at
  `limit`, mark a list exhausted at its limit.
- DBSF: mu and sd depend on the whole window of each list, so one more item changes every
  normalised score. The ranking of fixed windows (the prefetch limits) is the only honest
  one: fuse those windows once and page through the result. A next window, normalised on
  its own, gives fused order within each page but not across pages. Order within one list
  survives a re-normalisation (the map is increasing), but the fused sums do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

PointId = int | str
Scored = tuple[PointId, float]

QDRANT_RRF_K = 2
UPSTASH_RRF_K = 60
_BOUND_SLACK = 1e-9
"""Relative margin on RRF bounds. A bound is summed in a different order than the point's
real score, and float rounding must not let the real score pass the bound."""


def qdrant_rrf(
    lists: Sequence[Sequence[Scored]],
    k: int = QDRANT_RRF_K,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> list[Scored]:
    """Qdrant's (weighted) reciprocal rank fusion: `{"fusion": "rrf"}` or `{"rrf": {...}}`."""
    _check_rrf_args(len(lists), k, weights)
    _check_limit(limit)
    return _cut(_ranked(_rrf_scores(lists, k, _weights_or_ones(len(lists), weights))), limit)


def qdrant_dbsf(lists: Sequence[Sequence[Scored]], limit: int | None = None) -> list[Scored]:
    """Qdrant's distribution-based score fusion, `{"fusion": "dbsf"}`."""
    _check_limit(limit)
    fused: dict[PointId, float] = {}
    for items in lists:
        if not items:
            continue
        normalised = dbsf_normalise([score for _, score in items])
        for (point_id, _), score in zip(items, normalised, strict=True):
            _accumulate(fused, point_id, score)
    return _cut(_ranked(fused), limit)


def upstash_rrf(lists: Sequence[Sequence[Scored]], limit: int | None = None) -> list[Scored]:
    """Upstash's RRF, `1 / (rank + 60)` with a 0-based rank: Qdrant's formula with k = 60.

    At weight 1 the two formulas give identical floats: `(pos + 1.0) / 1.0 + 60 - 1.0` is
    exact for any realistic position.
    """
    return qdrant_rrf(lists, k=UPSTASH_RRF_K, limit=limit)


def upstash_dbsf(lists: Sequence[Sequence[Scored]], limit: int | None = None) -> list[Scored]:
    """Upstash's DBSF. The sample sd and the 0.5 edge cases are our choice (see module doc)."""
    return qdrant_dbsf(lists, limit=limit)


def rrf_contribution(pos: int, k: int, weight: float = 1.0) -> float:
    """What 0-based position `pos` of a list adds to a point's RRF score.

    The operations and their order are local mode's, so sums agree to the last bit. The
    value decreases with `pos`, so the next rank of a stream bounds everything unseen in it.
    """
    if weight <= 0:
        return 0.0
    return 1 / ((pos + 1.0) / weight + k - 1.0)


def dbsf_normalise(scores: Sequence[float]) -> list[float]:
    """Map one list's scores to `(s - (mu - 3 sd)) / (6 sd)` with the sample sd, as local mode.

    The scores are made floats first, as pydantic does to `ScoredPoint.score`. Python's
    `sum` is used, not numpy's pairwise sum, so mu and sd come out bit for bit equal.
    """
    values = [float(score) for score in scores]
    n = len(values)
    if n == 0:
        return []
    if n == 1:
        return [0.5]
    mean = sum(values) / n
    variance = sum([(value - mean) ** 2 for value in values]) / (n - 1)
    if variance == 0:
        return [0.5] * n
    std_dev = variance**0.5
    low = mean - 3 * std_dev
    high = mean + 3 * std_dev
    return [(value - low) / (high - low) for value in values]


def rrf_final_prefix(
    prefixes: Sequence[Sequence[Scored]],
    exhausted: Sequence[bool] | None = None,
    k: int = QDRANT_RRF_K,
    weights: Sequence[float] | None = None,
    limit: int | None = None,
) -> list[Scored]:
    """The head of the RRF of the complete streams that the unseen items cannot change.

    `prefixes[i]` holds what has been read from stream `i`, from rank 0; its length is the
    stream's next rank. `exhausted[i]` says that stream `i` has nothing more (None: none has).
    The result equals `qdrant_rrf(full_lists, k, weights)[:len(result)]`: the same ids,
    scores and order, ties included. Call with `k=UPSTASH_RRF_K` for Upstash.

    Each stream must hold a point at most once, as a search result does. A repeated point
    raises ValueError, because a later repeat could raise a score already declared final.
    """
    _check_rrf_args(len(prefixes), k, weights)
    _check_limit(limit)
    done = [False] * len(prefixes) if exhausted is None else list(exhausted)
    if len(done) != len(prefixes):
        raise ValueError("exhausted must have one flag per list")
    weight = _weights_or_ones(len(prefixes), weights)
    open_lists = [i for i, is_done in enumerate(done) if not is_done]
    frontier = {i: rrf_contribution(len(prefixes[i]), k, weight[i]) for i in open_lists}
    seen = _seen_points(prefixes, k, weight)
    exact, bounds = _split_exact(seen, open_lists, frontier, prefixes)
    return _cut(_final_head(exact, bounds), limit)


@dataclass
class _Seen:
    """One point read from the stream prefixes so far."""

    score: float
    first: tuple[int, int]
    """(list, position) of its first appearance: its place in the first-appearance tie order."""
    lists: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class _Bound:
    """An upper bound on a fused score that is not known yet, and the earliest tie position."""

    score: float
    first: tuple[int, int]


def _seen_points(
    prefixes: Sequence[Sequence[Scored]], k: int, weight: list[float]
) -> dict[PointId, _Seen]:
    """Seen contributions per point, summed list by list in the order `qdrant_rrf` uses."""
    seen: dict[PointId, _Seen] = {}
    for i, items in enumerate(prefixes):
        for pos, (point_id, _) in enumerate(items):
            gain = rrf_contribution(pos, k, weight[i])
            entry = seen.get(point_id)
            if entry is None:
                seen[point_id] = _Seen(gain, (i, pos), {i})
            elif i in entry.lists:
                raise ValueError(f"point {point_id!r} appears twice in list {i}")
            else:
                entry.score += gain
                entry.lists.add(i)
    return seen


def _split_exact(
    seen: dict[PointId, _Seen],
    open_lists: list[int],
    frontier: dict[int, float],
    prefixes: Sequence[Sequence[Scored]],
) -> tuple[list[tuple[PointId, _Seen]], list[_Bound]]:
    """Separate points whose score and tie place are final from bounds on everything open.

    A point missing from an open list may yet appear there, at the list's next rank at best.
    That can raise its score, unless the list's weight is <= 0. It can also move its first
    appearance earlier, if the list comes before the one where the point was first seen.
    One extra bound stands for every point not seen at all.
    """
    exact: list[tuple[PointId, _Seen]] = []
    bounds: list[_Bound] = []
    for point_id, entry in seen.items():
        missing = [i for i in open_lists if i not in entry.lists]
        first = min([entry.first, *((i, len(prefixes[i])) for i in missing)])
        gain = sum(frontier[i] for i in missing)
        if gain == 0 and first == entry.first:
            exact.append((point_id, entry))
        else:
            bounds.append(_Bound(_loosened(entry.score + gain, gain), first))
    if open_lists:
        gain = sum(frontier[i] for i in open_lists)
        bounds.append(_Bound(_loosened(gain, gain), (open_lists[0], len(prefixes[open_lists[0]]))))
    exact.sort(key=lambda item: (-item[1].score, item[1].first))
    return exact, bounds


def _loosened(bound: float, gain: float) -> float:
    """A bound with room for rounding, needed only where unseen contributions are added."""
    return bound * (1 + _BOUND_SLACK) if gain > 0 else bound


def _final_head(exact: list[tuple[PointId, _Seen]], bounds: list[_Bound]) -> list[Scored]:
    """Exact points, best first, until one could be overtaken or tied from ahead.

    Among exact points, (-score, first appearance) is the full fusion's order. An open point
    stays behind `x` only if its bound is below x's score, or equal to it with its earliest
    possible first appearance after x's.
    """
    top = max((bound.score for bound in bounds), default=-math.inf)
    tie_first = min((bound.first for bound in bounds if bound.score == top), default=None)
    head: list[Scored] = []
    for point_id, entry in exact:
        if entry.score < top or (entry.score == top and not entry.first < tie_first):
            break
        head.append((point_id, entry.score))
    return head


def _rrf_scores(
    lists: Sequence[Sequence[Scored]], k: int, weight: list[float]
) -> dict[PointId, float]:
    fused: dict[PointId, float] = {}
    for i, items in enumerate(lists):
        for pos, (point_id, _) in enumerate(items):
            _accumulate(fused, point_id, rrf_contribution(pos, k, weight[i]))
    return fused


def _accumulate(fused: dict[PointId, float], point_id: PointId, score: float) -> None:
    """Add to a point's sum; a point's first entry fixes its place in the tie order."""
    if point_id in fused:
        fused[point_id] += score
    else:
        fused[point_id] = score


def _ranked(fused: dict[PointId, float]) -> list[Scored]:
    """Best first. The sort is stable on insertion order, so ties keep first appearance."""
    return sorted(fused.items(), key=lambda item: item[1], reverse=True)


def _cut(ranked: list[Scored], limit: int | None) -> list[Scored]:
    return ranked if limit is None else ranked[:limit]


def _weights_or_ones(n_lists: int, weights: Sequence[float] | None) -> list[float]:
    return [1.0] * n_lists if weights is None else list(weights)


def _check_rrf_args(n_lists: int, k: int, weights: Sequence[float] | None) -> None:
    """Refuse what the Qdrant server refuses, so local-mode crashes never happen here.

    The server validates `k >= 1`; local mode divides by zero at k = 0. Local mode would
    turn a NaN or infinite weight into NaN scores or a division by zero.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError("RRF k must be an integer >= 1")
    if weights is None:
        return
    if len(weights) != n_lists:
        raise ValueError("Length of weights must match the number of responses in RRF")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError("RRF weights must be finite numbers")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
