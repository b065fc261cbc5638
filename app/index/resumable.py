"""Resumable nearest-neighbour queries: read the results of one query page by page.

`ResumableQuery.start()` opens a query on a segment, `next(k)` returns the next k best
points (``[]`` once every match was returned) and `state()` serialises the query so that
`ResumableQuery.resume()` can continue it later, in another request, from a PostgreSQL row.
Design and measurements: shared/reference/resumable-search.md; the two engines:

* **EXACT** (`ExactScan`): the matching rows in exact (score, point id) order behind a
  cursor. Chosen when the matches are few or the filter is selective, where a scan is
  cheaper than a walk that wades through non-matching nodes.
* **GRAPH** (`GraphWalk`): a best-first walk of hnswlib's level-0 graph, near-monotone, with
  a compact re-derivable state. It turns into EXACT mid-query (keeping what it returned as an
  exclusion set) when a page costs too many expansions, when its state grows too large, or
  when the graph it walked is gone.

`read_ahead(n)` computes results before they are asked for; they are part of `state()`, so
pages served from them leave the stored state standing (`moved` says whether the engine ran
since the last `state()`), and `resume(..., returned=...)` takes out those returned since.
A resumed query rebuilds its engine only once the read-ahead runs out.

Guarantees, whatever mix of warm `next()` calls and `state()`/`resume()` cycles:

* no point is returned twice;
* reading until ``[]`` returns every matching point that stayed alive since the start;
* a point deleted (or no longer allowed) is not returned after the deletion: rows are
  checked against the alive mask and `allow` when they are emitted;
* points written after the start never appear (an update writes a new row, so this is also
  what keeps an updated point from coming back with its new vector);
* exact score ties come out in point id order (EXACT); GRAPH orders each page that way.

A state is bound to the segment instance that produced it (its row numbers); `resume()`
raises `StateMismatch` elsewhere. One query object is not thread-safe: serialise the calls
on one handle (the session layer takes turns per handle).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from app.index import scoring
from app.index.resumable_exact import ExactScan
from app.index.resumable_graph import GraphWalk, emitted_rows
from app.index.resumable_scoring import Hit, Scorer, id_order
from app.index.resumable_segment import LevelZero, SegmentInfo, segment_info
from app.index.resumable_state import Mode, QueryState, StateError, dumps, loads
from app.index.segment import Segment
from app.models import PointId

__all__ = ["ResumableQuery", "StateError", "StateMismatch"]

Allow = Callable[[np.ndarray], np.ndarray]
"""Filter: given row numbers, a bool mask of the rows that match the query's filter."""

SELECTIVE = 0.08  # below this share of matching points, EXACT (knowhere ~7 %)
EXPANSIONS_PER_RESULT = 50  # a GRAPH page costing more than this per result turns EXACT
MAX_WALK_NODES = 100_000  # expanded + frontier nodes before a walk turns EXACT
MAX_GRAPH_STATE = 64 * 1024  # bytes of GRAPH state before the query turns EXACT
# Frontier nodes a walk expands per step, the nearest within the window's reach: nearly all
# of them would be expanded before the next result anyway, and a step of eight costs one
# round of numpy calls instead of eight (bench_resumable_engine.py: recall and time).
MIN_BATCH = 8


class StateMismatch(ValueError):
    """The state belongs to another segment instance (another worker, or before a restart)."""


class ResumableQuery:
    """One live query: `next(k)` pages, `state()` to park it, `resume()` to pick it up."""

    def __init__(
        self,
        segment: Segment,
        scorer: Scorer,
        engine: ExactScan | GraphWalk | None,
        *,
        allow: Allow | None,
        info: SegmentInfo,
        generation: int,
        row_limit: int,
        ef: int,
        emitted: int = 0,
        excluded: np.ndarray | None = None,
        saved: tuple[bytes, QueryState] | None = None,
        ahead: list[Hit] | None = None,
    ) -> None:
        """Use `start()` or `resume()`. A resumed query has no engine until it needs one:
        `saved` is then the state to rebuild it from, and its header (see `resume()`)."""
        self._segment = segment
        self._scorer = scorer
        self._engine = engine
        self._saved = saved
        self._allow = allow
        self._info = info
        self._generation = generation
        self._row_limit = row_limit
        self._ef = ef
        self._excluded = np.zeros(0, dtype=np.int64) if excluded is None else excluded
        self._ahead: deque[Hit] = deque(ahead or ())
        self.emitted = emitted
        # Whether the engine has moved past the last `state()`: pages served from the
        # read-ahead leave that state standing (see `read_ahead`).
        self.moved = engine is not None

    @property
    def mode(self) -> str:
        """The engine in use, `graph` or `exact`: a GRAPH query may turn EXACT, not back."""
        if self._engine is None:  # what `_restored()` will rebuild
            assert self._saved is not None
            saved = self._saved[1]
            with self._segment._lock.reading():
                walks = saved.mode is Mode.GRAPH and saved.graph == self._info.generation(
                    self._segment
                )
            return "graph" if walks else "exact"
        return "graph" if isinstance(self._engine, GraphWalk) else "exact"

    @property
    def ahead(self) -> int:
        """Results read ahead and not yet returned (see `read_ahead`)."""
        return len(self._ahead)

    # ------------------------------------------------------------------ opening

    @classmethod
    def start(
        cls,
        segment: Segment,
        query: np.ndarray,
        *,
        allow: Allow | None = None,
        expected_matches: int | None = None,
        ef: int = 128,
        exact_threshold: int = 30_000,
        mode: str | None = None,
    ) -> ResumableQuery:
        """Open a query. `expected_matches` is the planner's estimate of matching live points.

        EXACT when the estimate is at most `exact_threshold` or below 8 % of the live points
        (or there is no graph), GRAPH otherwise; `mode` forces one ("exact" / "graph").
        `ef` is the width of hnswlib's search for the first page and the walk's first window:
        at M=16 / ef_construct=100, synth-100k needs ef 128 for recall@10 0.96 (0.92 at 64).
        """
        scorer = Scorer(segment.distance, _prepare(segment, query))
        ef = max(1, min(ef, 0xFFFF))
        info = segment_info(segment)
        with segment._lock.reading():
            rows = segment._count
            match = _matching(segment, allow, rows)
            live, matches = len(segment), int(match.sum())
            estimate = matches if expected_matches is None else expected_matches
            wanted = mode or _plan(live, estimate, exact_threshold, segment._graph is not None)
            generation = info.generation(segment)
            walk = None
            if wanted == "graph" and segment._graph is not None:
                level0 = info.level_zero(segment)
                walk = _start_walk(segment, scorer, level0, match, ef, live, matches < live)
            engine = walk or ExactScan(
                segment, scorer, info.sq_norms(segment, rows), np.flatnonzero(match)
            )
        return cls(
            segment,
            scorer,
            engine,
            allow=allow,
            info=info,
            generation=generation,
            row_limit=rows,
            ef=ef,
        )

    @classmethod
    def resume(
        cls,
        segment: Segment,
        state: bytes,
        allow: Allow | None = None,
        returned: np.ndarray | None = None,
        query: np.ndarray | None = None,
    ) -> ResumableQuery:
        """Continue a query from `state()`, with the same filter (and, for a state stored
        without it, the same query vector).

        `returned` are write seqs returned since the state was taken, which its read-ahead
        must not return again. The engine itself is rebuilt on the first call that needs
        more than the read-ahead holds: pages served from the read-ahead cost no rebuild.
        Raises StateError for a damaged blob and StateMismatch for a state of another
        segment instance. A GRAPH state whose graph is gone continues as EXACT.
        """
        saved = loads(state, row_sets=False)
        info = segment_info(segment)
        if saved.epoch != info.epoch or saved.distance is not segment.distance:
            raise StateMismatch("the query state belongs to another segment instance")
        if len(saved.query):
            query = saved.query
        elif query is not None:
            query = _prepare(segment, query)
        else:
            raise StateError("the state was stored without its query vector: pass it")
        scorer = Scorer(segment.distance, query)
        with segment._lock.reading():
            rows = saved.ahead
            if returned is not None and len(returned) and len(rows):
                rows = rows[~np.isin(segment.rows_written_by(rows), returned)]
            sq_norms = info.sq_norms(segment, saved.row_limit)
            keys = scorer.keys(segment._vectors[rows], sq_norms[rows])
        return cls(
            segment,
            scorer,
            None,
            allow=allow,
            info=info,
            generation=saved.graph,
            row_limit=saved.row_limit,
            ef=saved.ef,
            emitted=saved.emitted,
            saved=(state, saved),
            ahead=list(zip(keys.tolist(), rows.tolist(), strict=True)),
        )

    # ------------------------------------------------------------------ paging

    def next(self, k: int, *, ahead_only: bool = False) -> list[tuple[PointId, float]]:
        """The next `k` best (point id, Qdrant score), best first; ``[]`` when exhausted.
        Results read ahead come first; `ahead_only` takes nothing else (no engine work, so
        cheap enough for an event loop: fewer than k when the read-ahead runs short)."""
        if k <= 0:
            return []
        with self._segment._lock.reading():
            hits = self._from_ahead(k)
            if len(hits) < k and not ahead_only:
                hits.extend(self._take_matching(k - len(hits)))
            ids = self._segment._ids
            page = sorted(hits, key=lambda hit: (hit[0], id_order(ids[hit[1]])))
            self.emitted += len(page)
            scores = self._scorer.scores([key for key, _ in page])
            return [(ids[row], score) for (_, row), score in zip(page, scores, strict=True)]

    def read_ahead(self, n: int) -> None:
        """Compute results now until `n` wait for the next calls of `next()`.

        They are part of `state()`, so a page the session serves from them leaves the
        stored state as it is: only which of them were returned changes (`resume`).
        """
        if n > len(self._ahead):
            with self._segment._lock.reading():
                self._ahead.extend(self._take_matching(n - len(self._ahead)))

    def state(self, *, with_query: bool = True) -> bytes:
        """The compact serialised state (see resumable_state), to store between pages.

        Without the query vector (`with_query` False) it is smaller, by 4 bytes a dimension,
        for a caller that keeps the vector anyway and passes it to `resume()`.
        """
        self.moved = False
        query = self._scorer.query if with_query else np.zeros(0, dtype=np.float32)
        if self._engine is None:  # every page since the resume came from the read-ahead
            assert self._saved is not None
            saved = loads(self._saved[0])
            return dumps(
                replace(saved, emitted=self.emitted, ahead=self._ahead_rows(), query=query)
            )
        blob = dumps(replace(self._snapshot(), query=query))
        if self.mode == "graph" and len(blob) > MAX_GRAPH_STATE:
            with self._segment._lock.reading():
                self._become_exact()
            blob = dumps(replace(self._snapshot(), query=query))
        return blob

    def switch_to_exact(self) -> None:
        """Continue as EXACT from here (the planner's escape hatch; tests use it too)."""
        with self._segment._lock.reading():
            if isinstance(self._restored(), GraphWalk):
                self._become_exact()

    def _take_matching(self, k: int) -> list[Hit]:
        """k hits that still match at emit time (deleted or filtered-out rows are skipped)."""
        out: list[Hit] = []
        while len(out) < k:
            hits = self._take(k - len(out))
            if not hits:
                break
            rows = np.array([row for _, row in hits], dtype=np.int64)
            keep = _matching_rows(self._segment, self._allow, rows)
            out.extend(hit for hit, ok in zip(hits, keep.tolist(), strict=True) if ok)
        return out

    def _from_ahead(self, k: int) -> list[Hit]:
        """Up to k read-ahead hits that still match (deleted or filtered-out rows are
        skipped, as when the engine emits them)."""
        out: list[Hit] = []
        while self._ahead and len(out) < k:
            hits = [self._ahead.popleft() for _ in range(min(k - len(out), len(self._ahead)))]
            rows = np.array([row for _, row in hits], dtype=np.int64)
            keep = _matching_rows(self._segment, self._allow, rows)
            out.extend(hit for hit, ok in zip(hits, keep.tolist(), strict=True) if ok)
        return out

    def _ahead_rows(self) -> np.ndarray:
        return np.array([row for _, row in self._ahead], dtype=np.int64)

    def _restored(self) -> ExactScan | GraphWalk:
        """The engine, rebuilt from the saved state on first use. Caller holds the read lock."""
        if self._engine is None:
            assert self._saved is not None
            saved, segment = loads(self._saved[0]), self._segment
            match = _matching(segment, self._allow, saved.row_limit)
            self._generation = self._info.generation(segment)
            self._engine, self._excluded = _resume_engine(
                segment, self._info, self._scorer, saved, match, self._generation
            )
            self._saved = None
        return self._engine

    def _take(self, n: int) -> list[Hit]:
        """Up to n hits from the engine; empty only when the query is exhausted."""
        self._restored()
        self.moved = True
        while isinstance(walk := self._engine, GraphWalk):
            hits, over_budget = walk.take(n, self._budget(walk, n))
            if over_budget or walk.expansions + len(walk.frontier) > MAX_WALK_NODES:
                self._become_exact()
            if hits or not over_budget:
                return hits
        assert self._engine is not None
        return self._engine.take(n)

    def _budget(self, walk: GraphWalk, n: int) -> int:
        """Expansions allowed for n results: 50 each, plus a window fill of ef / selectivity."""
        return int(EXPANSIONS_PER_RESULT * n + min(walk.ef / walk.share, MAX_WALK_NODES))

    def _become_exact(self) -> None:
        """GRAPH -> EXACT: scan the matches not yet emitted; what was emitted is excluded."""
        walk = self._engine
        assert isinstance(walk, GraphWalk)
        self._excluded = walk.emitted()
        rows = walk.match[: self._row_limit].copy()
        rows[self._excluded[self._excluded < self._row_limit]] = False
        sq_norms = self._info.sq_norms(self._segment, self._row_limit)
        self._engine = ExactScan(self._segment, self._scorer, sq_norms, np.flatnonzero(rows))

    def _snapshot(self) -> QueryState:
        engine = self._engine
        state = QueryState(
            mode=Mode.EXACT,
            distance=self._segment.distance,
            epoch=self._info.epoch,
            graph=self._generation,
            row_limit=self._row_limit,
            ef=self._ef,
            batch=0,
            emitted=self.emitted,
            query=self._scorer.query,
            cursor=engine.position if isinstance(engine, ExactScan) else None,
            excluded=self._excluded,
            ahead=self._ahead_rows(),
        )
        return engine.export(state) if isinstance(engine, GraphWalk) else state


# ---------------------------------------------------------------------- helpers


def _prepare(segment: Segment, query: np.ndarray) -> np.ndarray:
    query = scoring.prepare(np.asarray(query), segment.distance)
    if query.shape != (segment.dim,):
        raise ValueError(f"query has shape {query.shape}, the segment holds {segment.dim}-d")
    if not np.isfinite(query).all():
        raise ValueError("query contains NaN or infinity")
    return query


def _plan(live: int, matches: int, exact_threshold: int, has_graph: bool) -> str:
    """§4's rule: a scan beats a walk for few matches or a selective filter."""
    if not has_graph or matches <= exact_threshold or matches < SELECTIVE * live:
        return "exact"
    return "graph"


def _matching(segment: Segment, allow: Allow | None, rows: int) -> np.ndarray:
    """Bool mask over rows [0, rows): alive and allowed. Caller holds the read lock."""
    mask = segment._alive[:rows].copy()
    if allow is not None:
        live = np.flatnonzero(mask)
        mask[live] = np.asarray(allow(live), dtype=bool)
    return mask


def _matching_rows(segment: Segment, allow: Allow | None, rows: np.ndarray) -> np.ndarray:
    """Which of `rows` are alive and allowed right now."""
    keep = segment._alive[rows]
    if allow is not None and keep.any():
        keep[keep] = np.asarray(allow(rows[keep]), dtype=bool)
    return keep


def _start_walk(
    segment: Segment,
    scorer: Scorer,
    level0: LevelZero,
    match: np.ndarray,
    ef: int,
    live: int,
    filtered: bool,
) -> GraphWalk | None:
    """A walk seeded by hnswlib's own search, or None if that search cannot fill ef."""
    seeds = _seed_rows(segment, scorer.query, match if filtered else None, ef)
    if seeds is None:
        return None
    share = max(float(match.sum()) / max(live, 1), 1e-6)
    # More per step when matches are rare; never fewer than MIN_BATCH (see there).
    batch = int(np.clip(round(0.25 / share), MIN_BATCH, 32))
    sq_norms = segment_info(segment).sq_norms(segment, segment._count)
    return GraphWalk.start(
        segment, scorer, level0, match, sq_norms, ef=ef, batch=batch, seeds=seeds
    )


def _seed_rows(
    segment: Segment, query: np.ndarray, match: np.ndarray | None, ef: int
) -> np.ndarray | None:
    """hnswlib's ef-search in C++ with k = ef (set_ef is index-global, so never call it).

    With a filter, hnswlib calls back into Python per candidate; `match` as bytes keeps
    that callback to one index. Deleted rows need no filter: hnswlib skips them itself.
    If fewer than k rows match (hnswlib then raises), the unfiltered result seeds the walk,
    which goes through non-matching nodes anyway.
    """
    graph = segment._graph
    assert graph is not None
    k = min(ef, segment._graph_live)
    filters = [None]
    if match is not None:
        flags = match.astype(np.uint8).tobytes()
        filters.insert(0, lambda label: label < len(flags) and flags[label] == 1)
    for allowed in filters if k > 0 else []:
        try:
            labels, _ = graph.knn_query(query, k=k, num_threads=1, filter=allowed)
        except RuntimeError:  # fewer than k results
            continue
        return labels[0].astype(np.int64)
    return None


def _resume_engine(
    segment: Segment,
    info: SegmentInfo,
    scorer: Scorer,
    saved: QueryState,
    match: np.ndarray,
    generation: int,
) -> tuple[ExactScan | GraphWalk, np.ndarray]:
    """The engine a state continues with, and the EXACT exclusion set."""
    if saved.mode is Mode.GRAPH and saved.graph == generation:
        level0, sq_norms = info.level_zero(segment), info.sq_norms(segment, segment._count)
        return GraphWalk.restore(segment, scorer, level0, match, sq_norms, saved), saved.excluded
    sq_norms = info.sq_norms(segment, saved.row_limit)
    if saved.mode is Mode.GRAPH:  # the graph it walked is gone: scan what it did not emit
        excluded, cursor = emitted_rows(saved, match), None
    else:
        excluded, cursor = saved.excluded, saved.cursor
    rows = match.copy()
    rows[excluded[excluded < len(rows)]] = False
    return ExactScan(segment, scorer, sq_norms, np.flatnonzero(rows), cursor), excluded
