"""GRAPH mode: a best-first walk over the level-0 graph whose state survives a restart.

The walk is the ef-window search every production iterator uses (pgvector, knowhere,
VecSim), written so that its state is small and re-derivable (resumable-search.md §4):

* the **frontier** C holds discovered, unexpanded nodes, matching or not (the walk goes
  through non-matching and deleted nodes, it only never emits them), ordered by cheap
  float32 keys that only steer the walk;
* the **window** W holds the best pending matches by exact key (`ef` of them at first, then
  twice the depth: `_grow_window`); **overflow** holds expanded matches pushed out of W;
* a node is emitted only when the nearest unexpanded node is farther than W's worst, the
  stop rule of an HNSW search, so results come out in nearly increasing distance;
* when everything reachable is used up, the walk **teleports**: every matching row never
  discovered (zero in-degree nodes, rows the graph does not cover) joins the frontier, so
  reading to the end enumerates every match.

Everything is in segment rows, so a state stays meaningful as the graph grows: rows added
to the graph after the snapshot are simply "not in the graph" for this walk and are keyed
directly (as the tail) or found by the teleport.
"""

from __future__ import annotations

import heapq
import math
from bisect import insort
from dataclasses import replace
from itertools import takewhile

import numpy as np

from app.index.resumable_scoring import Hit, Scorer, id_order
from app.index.resumable_segment import LevelZero
from app.index.resumable_state import Mode, QueryState
from app.index.segment import Segment

DISCOVERED, EXPANDED, EMITTED, PENDING = 1, 2, 4, 8
HOT_ENTRIES = 256
WINDOW_GROWTH = 2  # the window holds at least this many pending results per emitted one ...
WINDOW_CAP = 2048  # ... up to this many (4096 gained 0.001-0.002 recall at 10k for ~1 KB)


class Frontier:
    """A min-queue of (key, row): a small heap of the nearest entries over numpy storage.

    Most discovered nodes are never expanded, so they wait in numpy arrays ("cold") and
    only the nearest few hundred live in a Python heap ("hot"). Every hot key is at most
    `bound` and every cold key above it, so the heap's head is always the global minimum.
    A resume pours the whole rebuilt frontier into cold storage in one call.
    """

    def __init__(self) -> None:
        self._hot: list[tuple[float, int]] = []
        self._bound = -math.inf
        self._cold_keys: list[np.ndarray] = []
        self._cold_rows: list[np.ndarray] = []
        self._cold = 0

    def __len__(self) -> int:
        return len(self._hot) + self._cold

    def push(self, keys: np.ndarray, rows: np.ndarray) -> None:
        near = keys <= self._bound
        if near.any():
            for entry in zip(keys[near].tolist(), rows[near].tolist(), strict=True):
                heapq.heappush(self._hot, entry)
            keys, rows = keys[~near], rows[~near]
        if len(keys):
            self._cold_keys.append(keys)
            self._cold_rows.append(rows)
            self._cold += len(keys)

    def min_key(self) -> float:
        """The smallest key; the frontier must not be empty."""
        if not self._hot:
            self._refill()
        return self._hot[0][0]

    def pop_upto(self, n: int, limit: float) -> list[tuple[float, int]]:
        """The minimum, then up to n - 1 more entries while their key is at most `limit`."""
        out = [self._pop()]
        while len(out) < n and len(self) and self.min_key() <= limit:
            out.append(self._pop())
        return out

    def _pop(self) -> tuple[float, int]:
        if not self._hot:
            self._refill()
        return heapq.heappop(self._hot)

    def _refill(self) -> None:
        keys, rows = np.concatenate(self._cold_keys), np.concatenate(self._cold_rows)
        if len(keys) > HOT_ENTRIES:
            self._bound = float(np.partition(keys, HOT_ENTRIES - 1)[HOT_ENTRIES - 1])
            near = keys <= self._bound
        else:
            self._bound = float(keys.max())
            near = np.ones(len(keys), dtype=bool)
        self._hot = sorted(zip(keys[near].tolist(), rows[near].tolist(), strict=True))
        far = ~near
        self._cold_keys, self._cold_rows = [keys[far]], [rows[far]]
        self._cold = int(far.sum())


class GraphWalk:
    """The §4 best-first walk; `take()` yields hits, `export()` its compact state.

    Window and overflow entries are (key, row): ties by point id are settled when a row is
    emitted (`_emit_best`), which keeps per-entry work to one small tuple.
    """

    def __init__(
        self,
        segment: Segment,
        scorer: Scorer,
        level0: LevelZero,
        match: np.ndarray,
        sq_norms: np.ndarray,
        *,
        ef: int,
        batch: int,
        seeds: np.ndarray,
    ) -> None:
        """An empty walk; use `start()` or `restore()`. `match` covers every row it may see."""
        self._segment = segment
        self._scorer = scorer
        self._level0 = level0
        self._sq_norms = sq_norms
        self._slack = scorer.fast_key_error(sq_norms)  # frontier keys vs exact keys
        self.match = match
        self.share = max(float(match.mean()), 1e-6) if len(match) else 1.0  # matching rows
        self.ef = ef
        self.batch = batch
        self.seeds = seeds
        self.status = np.zeros(len(match), dtype=np.uint8)
        # The expanded and the emitted rows as well, in the order they came: a state export
        # on every page reads them instead of scanning `status` (every row of the segment).
        self._expanded: list[np.ndarray] = []
        self._emitted: list[np.ndarray] = []
        self._emitted_since: list[int] = []  # emitted after the last `emitted()`
        self.frontier = Frontier()
        self.window: list[Hit] = []  # sorted, at most `capacity`
        self.overflow: list[Hit] = []  # heap of expanded pending rows
        self.fresh = True
        self.teleported = False
        self.expansions = 0
        self.emissions = 0
        self.capacity = ef

    def _grow_window(self) -> None:
        """The window's size: ef at first, then twice the depth (capped).

        At depth n the walk has explored about as far as an HNSW search with ef = n +
        window, and hnswlib needs ef ~ 2n for recall@n >= 0.99 once results leave the
        query's own cluster (synth-100k: recall@1000 is 0.954 at ef 1000, 0.988 at 2000).
        A fixed window gave cumulative recall 0.961 at 1,000 results there, 0.995 with
        this; the extra exploration is work later pages would have done anyway.
        """
        self.capacity = min(max(self.ef, WINDOW_GROWTH * self.emissions), WINDOW_CAP)

    @classmethod
    def start(
        cls,
        segment: Segment,
        scorer: Scorer,
        level0: LevelZero,
        match: np.ndarray,
        sq_norms: np.ndarray,
        *,
        ef: int,
        batch: int,
        seeds: np.ndarray,
    ) -> GraphWalk:
        """Seed the walk with the C++ search's result and every row the graph lacks."""
        match = _cover(match, level0.rows)
        walk = cls(segment, scorer, level0, match, sq_norms, ef=ef, batch=batch, seeds=seeds)
        walk._discover(np.union1d(seeds, walk._tail()))
        return walk

    @classmethod
    def restore(
        cls,
        segment: Segment,
        scorer: Scorer,
        level0: LevelZero,
        match: np.ndarray,
        sq_norms: np.ndarray,
        state: QueryState,
    ) -> GraphWalk:
        """Rebuild a walk from its compact state (see resumable_state)."""
        match = _cover(match, max(level0.rows, _end(state)))
        walk = cls(
            segment,
            scorer,
            level0,
            match,
            sq_norms,
            ef=state.ef,
            batch=state.batch,
            seeds=state.seeds,
        )
        walk.fresh, walk.teleported = state.fresh, state.teleported
        walk.emissions, walk.expansions = state.walked, len(state.expanded)
        walk._grow_window()
        walk._rediscover(state)
        walk._expanded = [state.expanded]
        emitted = emitted_rows(state, match)
        walk.status[emitted] |= EMITTED
        walk._emitted = [emitted]
        unexpanded = np.flatnonzero(walk.status & (DISCOVERED | EXPANDED) == DISCOVERED)
        walk.frontier.push(walk._fast_keys(unexpanded), unexpanded)
        walk._restore_pending(state.pending)
        return walk

    # ------------------------------------------------------------------ walking

    def take(self, n: int, budget: int) -> tuple[list[Hit], bool]:
        """Up to `n` hits; (hits, True) if `budget` expansions ran out first.

        Fewer than `n` hits without running out means the walk is exhausted.
        """
        out: list[Hit] = []
        if self.fresh:  # the seeds are an HNSW search's converged result: serve them as is
            while self.window and len(out) < n:
                out.append(self._emit_best())
            self.fresh = False
        stop = self.expansions + budget
        frontier, window = self.frontier, self.window
        while len(out) < n:
            if self.expansions > stop:
                return out, True
            self._refill_window()
            if len(frontier) and (
                len(window) < self.capacity or frontier.min_key() <= window[-1][0]
            ):
                self._expand()
            elif window:
                out.append(self._emit_best())
            elif not self._teleport():
                break
        return out, False

    def emitted(self) -> np.ndarray:
        """Rows emitted so far, each once (for the switch to EXACT)."""
        if self._emitted_since:
            self._emitted.append(np.array(self._emitted_since, dtype=np.int64))
            self._emitted_since = []
        self._emitted = [_joined(self._emitted)]
        return self._emitted[0]

    def export(self, common: QueryState) -> QueryState:
        """`common` (the query's header fields) completed with this walk's compact state."""
        status = self.status
        pending = [row for _, row in self.window] + [row for _, row in self.overflow]
        emitted = self.emitted()
        return replace(
            common,
            mode=Mode.GRAPH,
            fresh=self.fresh,
            walked=self.emissions,
            teleported=self.teleported,
            batch=self.batch,
            expanded=self._expanded_rows(),
            pending=np.array(pending, dtype=np.int64),
            seeds=self.seeds[status[self.seeds] & EXPANDED == 0],  # expanded ones: in E
            emitted_unexpanded=emitted[status[emitted] & EXPANDED == 0],
        )

    def _expanded_rows(self) -> np.ndarray:
        self._expanded = [_joined(self._expanded)]  # later pages add to one array
        return self._expanded[0]

    def _expand(self) -> None:
        """Expand the nearest frontier node, and up to `batch` - 1 more within the window."""
        limit = self.window[-1][0] if len(self.window) >= self.capacity else math.inf
        popped = self.frontier.pop_upto(self.batch, limit)
        rows = np.array([row for _, row in popped], dtype=np.int64)
        self.status[rows] |= EXPANDED
        self._expanded.append(rows)
        self.expansions += len(rows)
        found = self._level0.neighbours(rows)
        found = found[self.status[found] == 0]
        if len(rows) > 1 and len(found) > 1:  # neighbours shared by the rows: once each
            found = np.unique(found)
        if len(found):
            self._discover(found)
        waiting = self.match[rows] & (self.status[rows] & (EMITTED | PENDING) == 0)
        if waiting.any():
            self._admit_expanded(rows[waiting])

    def _discover(self, rows: np.ndarray) -> None:
        """Mark rows discovered, queue them, and offer the matching ones to the window."""
        self.status[rows] |= DISCOVERED
        priorities = self._fast_keys(rows)
        self.frontier.push(priorities, rows)
        hits = self.match[rows]
        if len(self.window) >= self.capacity:
            hits &= priorities <= self.window[-1][0] + self._slack
        rows = rows[hits]
        if len(rows):
            for hit in zip(self._keys(rows).tolist(), rows.tolist(), strict=True):
                self._offer(hit)

    def _teleport(self) -> bool:
        """Discover every matching row the graph never led to; False if there is none."""
        self.teleported = True
        rows = np.flatnonzero((self.status == 0) & self.match)
        if len(rows):
            self._discover(rows)
        return bool(len(rows))

    # ------------------------------------------------------------------ window

    def _offer(self, hit: Hit) -> bool:
        """Put a match into the window if it is among the best; evict the worst if full."""
        window = self.window
        if len(window) >= self.capacity and hit >= window[-1]:
            return False
        insort(window, hit)
        self.status[hit[1]] |= PENDING
        if len(window) > self.capacity:
            evicted = window.pop()
            if self.status[evicted[1]] & EXPANDED:
                heapq.heappush(self.overflow, evicted)
            else:  # still in the frontier: it is offered again when expanded
                self.status[evicted[1]] &= ~np.uint8(PENDING)
        return True

    def _admit_expanded(self, rows: np.ndarray) -> None:
        """Expanded matches wait in the window or, if not among the best, in the overflow."""
        for hit in zip(self._keys(rows).tolist(), rows.tolist(), strict=True):
            if not self._offer(hit):
                heapq.heappush(self.overflow, hit)
                self.status[hit[1]] |= PENDING

    def _refill_window(self) -> None:
        overflow, window = self.overflow, self.window
        while overflow and (len(window) < self.capacity or overflow[0] < window[-1]):
            self._offer(heapq.heappop(overflow))

    def _emit_best(self) -> Hit:
        """Pop the window's best; among equal keys, the smallest point id."""
        window = self.window
        first = 0
        if len(window) > 1 and window[1][0] == window[0][0]:
            ties = takewhile(lambda i: window[i][0] == window[0][0], range(len(window)))
            first = min(ties, key=lambda i: id_order(self._segment._ids[window[i][1]]))
        key, row = window.pop(first)
        self._emitted_since.append(row)
        self.emissions += 1
        self._grow_window()
        self.status[row] = (self.status[row] | EMITTED) & ~np.uint8(PENDING)
        return key, row

    # ------------------------------------------------------------------ helpers

    def _keys(self, rows: np.ndarray) -> np.ndarray:
        """Exact keys: the window's order, and the scores returned."""
        return self._scorer.keys(self._segment._vectors[rows], self._sq_norms[rows])

    def _fast_keys(self, rows: np.ndarray) -> np.ndarray:
        """Frontier priorities: they only steer the walk, so float32 is plenty."""
        return self._scorer.fast_keys_of(self._segment._vectors, self._sq_norms, rows)

    def _tail(self) -> np.ndarray:
        """Matching rows the snapshot does not cover: not yet indexed, or indexed later."""
        in_graph = np.zeros(len(self.match), dtype=bool)
        in_graph[: self._level0.rows] = self._level0.in_graph
        return np.flatnonzero(self.match & ~in_graph)

    def _rediscover(self, state: QueryState) -> None:
        """Status after resume: discovery happens only by expansion, seeding or teleport."""
        status = self.status
        status[state.expanded] = DISCOVERED | EXPANDED
        status[self._level0.neighbours(state.expanded)] |= DISCOVERED
        status[state.seeds] |= DISCOVERED
        status[state.pending] |= DISCOVERED  # already so, unless the snapshot changed
        status[state.emitted_unexpanded] |= DISCOVERED
        status[self._tail()] |= DISCOVERED
        if state.teleported:
            status[(status == 0) & self.match] |= DISCOVERED

    def _restore_pending(self, rows: np.ndarray) -> None:
        """The window is the best pending rows; the expanded rest is the overflow."""
        keys = self._keys(rows)
        order = np.lexsort((rows, keys))
        window, rest = order[: self.capacity], order[self.capacity :]
        rest = rest[self.status[rows[rest]] & EXPANDED > 0]  # the others wait in the frontier
        self.window = list(zip(keys[window].tolist(), rows[window].tolist(), strict=True))
        self.overflow = list(zip(keys[rest].tolist(), rows[rest].tolist(), strict=True))
        self.status[rows[window]] |= PENDING
        self.status[rows[rest]] |= PENDING


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """Row numbers kept in several arrays, as one int64 array."""
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def emitted_rows(state: QueryState, match: np.ndarray) -> np.ndarray:
    """Rows a GRAPH state has emitted: expanded matches not pending, plus the unexpanded.

    Every expanded match was offered to the window when it was expanded, so it is either
    still pending or already emitted; only emitted rows that were never expanded need
    listing. (`match` is re-evaluated at resume: a row that stopped matching is not
    counted, and it cannot be emitted again anyway.)
    """
    done = np.zeros(len(match), dtype=bool)
    done[state.expanded[state.expanded < len(match)]] = True
    done &= match
    done[state.pending[state.pending < len(match)]] = False
    done[state.emitted_unexpanded[state.emitted_unexpanded < len(match)]] = True
    return np.flatnonzero(done)


def _cover(match: np.ndarray, rows: int) -> np.ndarray:
    """`match` padded with False to `rows`: rows past the query's start never match."""
    if len(match) >= rows:
        return match
    return np.concatenate([match, np.zeros(rows - len(match), dtype=bool)])


def _end(state: QueryState) -> int:
    sets = (state.expanded, state.pending, state.seeds, state.emitted_unexpanded)
    return max((int(rows.max()) + 1 for rows in sets if len(rows)), default=0)
