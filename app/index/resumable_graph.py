"""GRAPH mode: a best-first walk over the level-0 graph whose state survives a restart.

The walk is the ef-window search every production iterator uses (pgvector, knowhere,
VecSim), written so that its state is small and re-derivable (resumable-search.md §4):

* the **frontier** C holds discovered, unexpanded nodes, matching or not (the walk goes
  through non-matching and deleted nodes, it only never emits them);
* the **window** W holds the `ef` best pending matches; **overflow** holds expanded matches
  pushed out of W;
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

import numpy as np

from app.index.resumable_scoring import Entry, Scorer, id_order
from app.index.resumable_segment import LevelZero
from app.index.resumable_state import Mode, QueryState
from app.index.segment import Segment

DISCOVERED, EXPANDED, EMITTED, PENDING = 1, 2, 4, 8
HOT_ENTRIES = 256
WINDOW_GROWTH = 2  # the window holds at least this many pending results per emitted one ...
WINDOW_CAP = 4096  # ... up to this many


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
    """The §4 best-first walk; `take()` yields entries, `export()` its compact state."""

    def __init__(
        self,
        segment: Segment,
        scorer: Scorer,
        level0: LevelZero,
        match: np.ndarray,
        *,
        ef: int,
        batch: int,
        seeds: np.ndarray,
    ) -> None:
        """An empty walk; use `start()` or `restore()`. `match` covers every row it may see."""
        self._segment = segment
        self._scorer = scorer
        self._level0 = level0
        self.match = match
        self.ef = ef
        self.batch = batch
        self.seeds = seeds
        self.status = np.zeros(len(match), dtype=np.uint8)
        self.frontier = Frontier()
        self.window: list[Entry] = []  # sorted, at most ef
        self.overflow: list[Entry] = []  # heap of expanded pending entries
        self.fresh = True
        self.teleported = False
        self.expansions = 0
        self.emissions = 0

    @property
    def capacity(self) -> int:
        """The window's size: ef at first, then twice the depth (capped).

        At depth n the walk has explored about as far as an HNSW search with ef = n +
        window, and hnswlib needs ef ~ 2n for recall@n >= 0.99 once results leave the
        query's own cluster (synth-100k: recall@1000 is 0.954 at ef 1000, 0.988 at 2000).
        A fixed window gave cumulative recall 0.961 at 1,000 results there, 0.995 with
        this; the extra exploration is work later pages would have done anyway.
        """
        return min(max(self.ef, WINDOW_GROWTH * self.emissions), WINDOW_CAP)

    @classmethod
    def start(
        cls,
        segment: Segment,
        scorer: Scorer,
        level0: LevelZero,
        match: np.ndarray,
        *,
        ef: int,
        batch: int,
        seeds: np.ndarray,
    ) -> GraphWalk:
        """Seed the walk with the C++ search's result and every row the graph lacks."""
        match = _cover(match, level0.rows)
        walk = cls(segment, scorer, level0, match, ef=ef, batch=batch, seeds=seeds)
        walk._discover(np.union1d(seeds, walk._tail()))
        return walk

    @classmethod
    def restore(
        cls,
        segment: Segment,
        scorer: Scorer,
        level0: LevelZero,
        match: np.ndarray,
        state: QueryState,
    ) -> GraphWalk:
        """Rebuild a walk from its compact state (see resumable_state)."""
        match = _cover(match, max(level0.rows, _end(state)))
        walk = cls(
            segment, scorer, level0, match, ef=state.ef, batch=state.batch, seeds=state.seeds
        )
        walk.fresh, walk.teleported = state.fresh, state.teleported
        walk.emissions = state.walked
        walk._rediscover(state)
        walk.status[emitted_rows(state, match)] |= EMITTED
        unexpanded = np.flatnonzero(walk.status & (DISCOVERED | EXPANDED) == DISCOVERED)
        walk.frontier.push(walk._keys(unexpanded), unexpanded)
        walk._restore_pending(state.pending)
        walk.expansions = len(state.expanded)
        return walk

    # ------------------------------------------------------------------ walking

    def take(self, n: int, budget: int) -> tuple[list[Entry], bool]:
        """Up to `n` entries; (entries, True) if `budget` expansions ran out first.

        Fewer than `n` entries without running out means the walk is exhausted.
        """
        out: list[Entry] = []
        if self.fresh:  # the seeds are an HNSW search's converged result: serve them as is
            while self.window and len(out) < n:
                out.append(self._emit_best())
            self.fresh = False
        stop = self.expansions + budget
        while len(out) < n:
            if self.expansions > stop:
                return out, True
            self._refill_window()
            if self._should_expand():
                self._expand()
            elif self.window:
                out.append(self._emit_best())
            elif not self._teleport():
                break
        return out, False

    def emitted(self) -> np.ndarray:
        """Rows emitted so far (for the switch to EXACT)."""
        return np.flatnonzero(self.status & EMITTED)

    def export(self, common: QueryState) -> QueryState:
        """`common` (the query's header fields) completed with this walk's compact state."""
        status = self.status
        pending = [entry[2] for entry in self.window] + [entry[2] for entry in self.overflow]
        return replace(
            common,
            mode=Mode.GRAPH,
            fresh=self.fresh,
            walked=self.emissions,
            teleported=self.teleported,
            batch=self.batch,
            expanded=np.flatnonzero(status & EXPANDED),
            pending=np.array(pending, dtype=np.int64),
            seeds=self.seeds,
            emitted_unexpanded=np.flatnonzero(status & (EMITTED | EXPANDED) == EMITTED),
        )

    def _should_expand(self) -> bool:
        if not len(self.frontier):
            return False
        return len(self.window) < self.capacity or self.frontier.min_key() <= self.window[-1][0]

    def _expand(self) -> None:
        limit = self.window[-1][0] if len(self.window) >= self.capacity else math.inf
        popped = self.frontier.pop_upto(self.batch, limit)
        rows = np.array([row for _, row in popped], dtype=np.int64)
        self.status[rows] |= EXPANDED
        self.expansions += len(rows)
        found = self._level0.neighbours(rows)
        if len(rows) > 1:
            found = np.unique(found)
        found = found[self.status[found] == 0]
        if len(found):
            self._discover(found)
        for key, row in popped:
            if self.match[row] and not self.status[row] & (EMITTED | PENDING):
                entry = (key, self._order(row), row)
                if not self._offer(entry):
                    self._overflow(entry)

    def _discover(self, rows: np.ndarray) -> None:
        """Mark rows discovered, queue them, and offer the matching ones to the window."""
        self.status[rows] |= DISCOVERED
        keys = self._keys(rows)
        self.frontier.push(keys, rows)
        hits = self.match[rows]
        if len(self.window) >= self.capacity:
            hits &= keys <= self.window[-1][0]
        for key, row in zip(keys[hits].tolist(), rows[hits].tolist(), strict=True):
            self._offer((key, self._order(row), row))

    def _teleport(self) -> bool:
        """Discover every matching row the graph never led to; False if there is none."""
        self.teleported = True
        rows = np.flatnonzero((self.status == 0) & self.match)
        if len(rows):
            self._discover(rows)
        return bool(len(rows))

    # ------------------------------------------------------------------ window

    def _offer(self, entry: Entry) -> bool:
        """Put a match into the window if it is among the ef best; evict the worst if full."""
        window = self.window
        if len(window) >= self.capacity and entry >= window[-1]:
            return False
        insort(window, entry)
        self.status[entry[2]] |= PENDING
        if len(window) > self.capacity:
            evicted = window.pop()
            if self.status[evicted[2]] & EXPANDED:
                heapq.heappush(self.overflow, evicted)
            else:  # still in the frontier: it is offered again when expanded
                self.status[evicted[2]] &= ~np.uint8(PENDING)
        return True

    def _overflow(self, entry: Entry) -> None:
        heapq.heappush(self.overflow, entry)
        self.status[entry[2]] |= PENDING

    def _refill_window(self) -> None:
        overflow, window = self.overflow, self.window
        while overflow and (len(window) < self.capacity or overflow[0] < window[-1]):
            self._offer(heapq.heappop(overflow))

    def _emit_best(self) -> Entry:
        entry = self.window.pop(0)
        self.emissions += 1
        row = entry[2]
        self.status[row] = (self.status[row] | EMITTED) & ~np.uint8(PENDING)
        return entry

    # ------------------------------------------------------------------ helpers

    def _keys(self, rows: np.ndarray) -> np.ndarray:
        return self._scorer.keys(self._segment._vectors[rows])

    def _order(self, row: int) -> tuple[int, int | str]:
        return id_order(self._segment._ids[row])

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
        status[self._tail()] |= DISCOVERED
        if state.teleported:
            status[(status == 0) & self.match] |= DISCOVERED

    def _restore_pending(self, rows: np.ndarray) -> None:
        """The window is the ef best pending rows; the expanded rest is the overflow."""
        keys = self._keys(rows).tolist()
        entries = sorted(
            (key, self._order(row), row) for key, row in zip(keys, rows.tolist(), strict=True)
        )
        self.window = entries[: self.capacity]
        self.overflow = [e for e in entries[self.capacity :] if self.status[e[2]] & EXPANDED]
        for entry in self.window + self.overflow:
            self.status[entry[2]] |= PENDING


def emitted_rows(state: QueryState, match: np.ndarray) -> np.ndarray:
    """Rows a GRAPH state has emitted: expanded matches not pending, plus the unexpanded.

    Every expanded match was offered to the window when it was expanded, so it is either
    still pending or already emitted; only emitted rows that were never expanded need
    listing. (`match` is re-evaluated at resume: a row that stopped matching is not
    counted, and it cannot be emitted again anyway.)
    """
    expanded = state.expanded[state.expanded < len(match)]
    expanded = expanded[match[expanded]]
    done = np.setdiff1d(expanded, state.pending, assume_unique=True)
    return np.union1d(done, state.emitted_unexpanded)


def _cover(match: np.ndarray, rows: int) -> np.ndarray:
    """`match` padded with False to `rows`: rows past the query's start never match."""
    if len(match) >= rows:
        return match
    return np.concatenate([match, np.zeros(rows - len(match), dtype=bool)])


def _end(state: QueryState) -> int:
    sets = (state.expanded, state.pending, state.seeds, state.emitted_unexpanded)
    return max((int(rows.max()) + 1 for rows in sets if len(rows)), default=0)
