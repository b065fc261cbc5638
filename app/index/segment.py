"""One segment: the vectors of one (collection, namespace, vector name) in memory.

Rows are append-only: an upsert of an existing point retires its old row and appends a new
one, so a row number is a stable label that is never reused (hnswlib labels are row numbers).
Below `exact_threshold` live points (the collection's `full_scan_threshold`, unless the
server sets one for all) every search is an exact numpy scan (for a filter's candidates,
below `filtered_threshold`); above it an hnswlib graph is
built in the background and kept current by `index_step()`, and rebuilt there when the
collection's `m` or `ef_construct` change. Rows appended after the
graph was last extended are "pending" and scanned exactly, so every search sees every
committed write (read-your-writes) whatever the indexer is doing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial

import hnswlib
import numpy as np

from app.index import scoring
from app.index.locks import ReadWriteLock
from app.index.recommend import RecoScorer, Strategy, core_similarity, sigmoid
from app.models import Distance, HnswParams, PointId

RESCORE_MARGIN = 32  # extra exact-scan candidates re-scored in float64 before the final cut
CONTENDER_SLACK = 1e-4  # relative float32 distance gap under which graph results may swap
INDEX_CHUNK = 512  # rows added to the graph per write-lock hold
HNSW_SEED = 100
PROBE_ROUNDS = 3  # best_score graph probes: widths w, 4w, 16w, then an exact scan
PROBE_GROWTH = 4
POSTFILTER_MARGIN = 2.0  # extra results such a search asks for, so that k of them pass
POSTFILTER_PASSES = 3  # it is tried when the share passing should give this many times k
# A filter's candidates are scanned up to this many bytes of vectors at least, whatever the
# full_scan_threshold: below it the graph costs more than the scan (measured by
# scripts/bench_segment_filtered.py; figures in docs/benchmarks.md).
FILTERED_SCAN_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True)
class SearchHits:
    """Best-first results of one search: point ids, Qdrant scores, versions and the plan."""

    ids: list[PointId]
    scores: list[float]
    versions: list[int]
    plan: str


class Segment:
    def __init__(
        self,
        dim: int,
        distance: Distance,
        hnsw: HnswParams,
        exact_threshold: int | None = None,
        threads: int = 2,
    ) -> None:
        """`exact_threshold`: the server's, for every segment; None: from `hnsw`."""
        self.dim = dim
        self.distance = distance
        self.threads = threads
        self._threshold_override = exact_threshold
        self.hnsw = hnsw
        self.exact_threshold, self.filtered_threshold = self._thresholds()
        self._lock = ReadWriteLock()
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self._versions = np.zeros(0, dtype=np.int64)
        self._seqs = np.zeros(0, dtype=np.int64)  # the seq that wrote each row's vector
        self._ids: list[PointId] = []
        self._row_of: dict[PointId, int] = {}
        self._count = 0
        self._graph: hnswlib.Index | None = None
        self._graph_hnsw = hnsw  # the parameters the graph was built with
        self._graph_rows = 0  # rows [0, _graph_rows) have been offered to the graph
        self._graph_live = 0
        self.generation = 0  # bumped by every write: cached filter results check it

    def reconfigure(self, hnsw: HnswParams) -> None:
        """New HNSW parameters: a new threshold now, a rebuilt graph soon (`needs_indexing`);
        until it is installed, searches use the current one."""
        with self._lock.writing():
            self.hnsw = hnsw
            self.exact_threshold, self.filtered_threshold = self._thresholds()

    def _thresholds(self) -> tuple[int, int]:
        """Up to how many live points a search scans, and up to how many filter candidates."""
        if self._threshold_override is not None:
            return self._threshold_override, self._threshold_override
        points = self.hnsw.full_scan_points(self.dim)
        return points, max(points, FILTERED_SCAN_BYTES // (4 * self.dim))

    # ----------------------------------------------------------------- writes

    def upsert(self, ids: Sequence[PointId], vectors: np.ndarray, versions: Sequence[int]) -> None:
        """Store new vectors for `ids`; `versions` are the seqs of the writes (newer wins)."""
        vectors = scoring.prepare(vectors, self.distance)
        with self._lock.writing():
            keep = [i for i, pid in enumerate(ids) if self._is_newer(pid, versions[i])]
            if not keep:
                return
            self._retire([ids[i] for i in keep])
            start = self._count
            self._reserve(start + len(keep))
            stop = start + len(keep)
            self._vectors[start:stop] = vectors[keep]
            self._alive[start:stop] = True
            self._versions[start:stop] = [versions[i] for i in keep]
            self._seqs[start:stop] = self._versions[start:stop]
            for offset, i in enumerate(keep):
                self._ids.append(ids[i])
                self._row_of[ids[i]] = start + offset
            self._count = stop
            self.generation += 1

    def delete(self, ids: Sequence[PointId], versions: Sequence[int] | None = None) -> None:
        """Remove points; with `versions` (the deletes' seqs) only those written before."""
        with self._lock.writing():
            if versions is not None:
                ids = [
                    pid for pid, seq in zip(ids, versions, strict=True) if self._is_newer(pid, seq)
                ]
            self._retire(ids)
            self.generation += 1

    def set_versions(self, ids: Sequence[PointId], versions: Sequence[int]) -> None:
        """Record payload-only writes, so results report each point's latest version."""
        with self._lock.writing():
            changed = False
            for pid, version in zip(ids, versions, strict=True):
                row = self._row_of.get(pid)
                if row is not None and version > self._versions[row]:
                    self._versions[row] = version
                    changed = True
            if changed:  # a payload changed: filters may match differently
                self.generation += 1

    def _is_newer(self, point_id: PointId, version: int) -> bool:
        row = self._row_of.get(point_id)
        return row is None or version > self._versions[row]

    def _retire(self, ids: Sequence[PointId]) -> None:
        for pid in ids:
            row = self._row_of.pop(pid, None)
            if row is None:
                continue
            self._alive[row] = False
            if row < self._graph_rows and self._graph is not None:
                self._graph.mark_deleted(row)
                self._graph_live -= 1

    def _reserve(self, rows: int) -> None:
        capacity = len(self._alive)
        if rows <= capacity:
            return
        capacity = max(rows, 2 * capacity, 1024)
        vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        vectors[: self._count] = self._vectors[: self._count]
        alive = np.zeros(capacity, dtype=bool)
        alive[: self._count] = self._alive[: self._count]
        versions = np.zeros(capacity, dtype=np.int64)
        versions[: self._count] = self._versions[: self._count]
        seqs = np.zeros(capacity, dtype=np.int64)
        seqs[: self._count] = self._seqs[: self._count]
        self._vectors, self._alive, self._versions, self._seqs = vectors, alive, versions, seqs

    # ------------------------------------------------------------------ reads

    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def indexed(self) -> int:
        """Live points reachable through the graph (Qdrant's `indexed_vectors_count`)."""
        return self._graph_live

    def seq_of(self, point_id: PointId) -> int | None:
        """The seq of the write that set this point's current vector (a portable label)."""
        row = self._row_of.get(point_id)
        return None if row is None else int(self._seqs[row])

    def version_of(self, point_id: PointId) -> int | None:
        """The point's latest write (vector or payload): the `version` results report."""
        row = self._row_of.get(point_id)
        return None if row is None else int(self._versions[row])

    def max_seq(self) -> int:
        """The newest write this segment holds: a session started now sees writes up to it."""
        with self._lock.reading():
            return int(self._seqs[: self._count].max()) if self._count else 0

    def rows_written_by(self, rows: np.ndarray) -> np.ndarray:
        """The write seq of each row: unlike row numbers, the same on every worker."""
        return self._seqs[rows]

    def vector(self, point_id: PointId) -> np.ndarray | None:
        row = self._row_of.get(point_id)
        return None if row is None else self._vectors[row].copy()

    def vectors(self, ids: Sequence[PointId]) -> list[np.ndarray | None]:
        with self._lock.reading():
            return [self.vector(pid) for pid in ids]

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        ef: int | None = None,
        exact: bool = False,
        score_threshold: float | None = None,
        indexed_only: bool = False,
        allowed: np.ndarray | None = None,
    ) -> SearchHits:
        """The `k` best live points for `query`, best first.

        `allowed` (sorted row numbers, from `rows_of`) restricts the search to the points a
        filter matched: few of them are scanned exactly, many are searched in the graph
        with a filter bitmap. `indexed_only` (Qdrant's search param) skips what the graph
        does not cover yet in a segment large enough to need one.
        """
        query = scoring.prepare(query, self.distance)
        with self._lock.reading():
            large = len(self) > self.exact_threshold
            if k <= 0 or not self._row_of or (indexed_only and large and self._graph is None):
                return SearchHits([], [], [], "exact")
            if allowed is not None:
                allowed = allowed[self._alive[allowed]]
            rows, plan = self._nearest_rows(query, k, ef, exact, indexed_only, allowed)
            return self._finish(query, rows, k, score_threshold, plan)

    def ranking(self, query: np.ndarray) -> tuple[list[PointId], np.ndarray, np.ndarray]:
        """Every live point best first by exact score, ties to the older write: (ids,
        scores, write seqs). What a resumable fused query ranks, once per engine."""
        query = scoring.prepare(query, self.distance)
        with self._lock.reading():
            rows = np.flatnonzero(self._alive[: self._count])
            scores = scoring.over_rows(
                lambda matrix: scoring.exact_scores(matrix, query, self.distance),
                self._vectors,
                rows,
            )
            seqs = self._seqs[rows]
        best = scoring.order(scores, seqs, self.distance)
        rows = rows[best]
        return [self._ids[r] for r in rows.tolist()], scores[best], seqs[best]

    def recommend(
        self,
        scorer: RecoScorer,
        k: int,
        *,
        ef: int | None = None,
        exact: bool = False,
        score_threshold: float | None = None,
        allowed: np.ndarray | None = None,
    ) -> SearchHits:
        """The `k` best live points for a `best_score` or `sum_scores` recommend query.

        Below the threshold (or with `exact`) every candidate is scored. On the graph path
        the candidates come from nearest-neighbour queries that provably contain the best
        points, up to the graph's own recall (`_sum_rows`, `_best_rows`); the final scores
        and order are always computed exactly over those candidates.
        """
        with self._lock.reading():
            if k <= 0 or not self._row_of:
                return SearchHits([], [], [], "exact")
            if allowed is not None:
                allowed = allowed[self._alive[allowed]]
            rows = None
            if self._graph_worth_it(exact, allowed):
                if scorer.strategy is Strategy.SUM_SCORES:
                    rows = self._sum_rows(scorer, k, ef, allowed)
                else:
                    rows = self._best_rows(scorer, k, ef, allowed, score_threshold)
            plan = "exact" if rows is None else "hnsw"
            if rows is None:
                rows = self._scan_scored(scorer, k, allowed)
            scores = scorer.scores(self._vectors[rows])
            return self._finish_scored(rows, scores, k, score_threshold, plan)

    def rows_of(self, ids: Collection[PointId]) -> np.ndarray:
        """Sorted rows of the live points among `ids` (a filter's matches, for `allowed`)."""
        with self._lock.reading():
            found = [row for pid in ids if (row := self._row_of.get(pid)) is not None]
        return np.unique(np.asarray(found, dtype=np.int64))

    def sample_ids(self, size: int, seed: int = 0) -> list[PointId]:
        """Up to `size` live points drawn at random (the planner's selectivity sample)."""
        with self._lock.reading():
            live = np.flatnonzero(self._alive[: self._count])
            rng = np.random.default_rng(seed)
            rows = live if len(live) <= size else rng.choice(live, size, replace=False)
            return [self._ids[row] for row in rows.tolist()]

    def rows_except(self, ids: Collection[PointId]) -> np.ndarray:
        """Sorted rows of the live points not among `ids` (a negated filter's matches)."""
        with self._lock.reading():
            live = np.flatnonzero(self._alive[: self._count])
            excluded = [row for pid in ids if (row := self._row_of.get(pid)) is not None]
        return np.setdiff1d(live, np.asarray(excluded, dtype=np.int64), assume_unique=True)

    def _nearest_rows(
        self,
        query: np.ndarray,
        k: int,
        ef: int | None,
        exact: bool,
        indexed_only: bool,
        allowed: np.ndarray | None,
    ) -> tuple[np.ndarray, str]:
        """Candidate rows holding the k nearest live (and allowed) rows, and the plan.

        The candidates are the graph's `max(ef, k)` labels plus the best k + margin of the
        rows the graph does not cover yet, or the best k + margin of an exact scan.
        """
        if allowed is not None:
            return self._filtered_rows(query, k, ef, exact, allowed)
        if self._graph_worth_it(exact, None):
            rows = self._graph_candidates(query, k, ef, indexed_only)
            if rows is not None:
                return rows, "hnsw"
        return self._scan_candidates(query, k, 0), "exact"

    def _filtered_rows(
        self, query: np.ndarray, k: int, ef: int | None, exact: bool, allowed: np.ndarray
    ) -> tuple[np.ndarray, str]:
        """Few allowed rows are scanned; many are searched in the graph."""
        if not self._graph_worth_it(exact, allowed):
            return self._scan_rows(query, k, allowed), "exact"
        flags = np.zeros(self._count, dtype=np.uint8)
        flags[allowed] = 1
        # A filter hides part of every neighbourhood the search walks through: widen ef by
        # the inverse of the selectivity (at most 8x) so the same recall holds as unfiltered.
        widen = min(8.0, len(self) / max(len(allowed), 1))
        want = min(int(max(ef or self.hnsw.ef_construct, k) * widen), len(allowed))
        found = None
        passing = len(allowed) / len(self) * min(want * POSTFILTER_MARGIN, self._graph_live)
        if passing >= POSTFILTER_PASSES * k:
            found = self._postfiltered(query, k, want, flags)
        if found is None:
            found = self._graph_filtered(query, k, want, flags)
        if found is None:  # the graph could not reach `want` matches: scan them instead
            return self._scan_rows(query, k, allowed), "exact"
        pending = allowed[allowed >= self._graph_rows]
        return np.concatenate([found, self._scan_rows(query, k, pending)]), "hnsw"

    def _postfiltered(
        self, query: np.ndarray, k: int, want: int, flags: np.ndarray
    ) -> np.ndarray | None:
        """The filter applied to an unfiltered graph search of `want` (and a margin) results:
        far cheaper than hnswlib calling a Python filter for every row it visits
        (scripts/bench_segment_filtered.py). When k of them pass, they are the nearest
        passing points the graph finds: any passing point beyond the results is farther
        than all of them.
        None when fewer than k pass."""
        assert self._graph is not None
        try:
            labels, distances = self._graph.knn_query(
                query, k=min(int(want * POSTFILTER_MARGIN), self._graph_live), num_threads=1
            )
        except RuntimeError:
            return None
        passed = flags[labels[0]].astype(bool)
        if np.count_nonzero(passed) < k:
            return None
        labels, distances = labels[0, passed], distances[0, passed]
        return labels[: self._contenders(distances, k)].astype(np.int64)

    def _graph_filtered(
        self, query: np.ndarray, k: int, want: int, flags: np.ndarray
    ) -> np.ndarray | None:
        """The graph searched with the filter as a bitmap (None: fewer than `want` matches
        reachable). The widened search walks further than k; only its contenders are kept
        to be re-scored."""
        assert self._graph is not None
        bitmap = flags.tobytes()
        try:
            labels, distances = self._graph.knn_query(
                query, k=want, num_threads=1, filter=lambda row: row < len(bitmap) and bitmap[row]
            )
        except RuntimeError:
            return None
        return labels[0, : self._contenders(distances[0], k)].astype(np.int64)

    def _scan_rows(self, query: np.ndarray, k: int, rows: np.ndarray) -> np.ndarray:
        """Exact scan of the given rows: the best k + margin of them."""
        if len(rows) <= k + RESCORE_MARGIN:
            return rows
        keys = scoring.over_rows(
            lambda matrix: scoring.sort_keys(matrix, query, self.distance), self._vectors, rows
        )
        return rows[np.argpartition(keys, k + RESCORE_MARGIN)[: k + RESCORE_MARGIN]]

    def _scan_candidates(self, query: np.ndarray, k: int, start: int) -> np.ndarray:
        """Exact scan of rows [start, count): the best k + margin live rows."""
        stop = self._count
        alive = np.flatnonzero(self._alive[start:stop]) + start
        if len(alive) <= k + RESCORE_MARGIN:
            return alive
        keys = scoring.sort_keys(self._vectors[start:stop], query, self.distance)
        keys[~self._alive[start:stop]] = np.inf
        best = np.argpartition(keys, k + RESCORE_MARGIN)[: k + RESCORE_MARGIN]
        return best + start

    def _graph_candidates(
        self, query: np.ndarray, k: int, ef: int | None, indexed_only: bool = False
    ) -> np.ndarray | None:
        assert self._graph is not None
        want = min(max(ef or self.hnsw.ef_construct, k), self._graph_live)
        if want <= 0:
            return None
        try:
            # The effective ef is max(index ef, k): asking for `want` labels gives ef=want
            # without touching the index-global set_ef (which would race between searches).
            labels, distances = self._graph.knn_query(query, k=want, num_threads=1)
        except RuntimeError:  # the graph could not produce `want` live results
            return None
        rows = labels[0, : self._contenders(distances[0], k)].astype(np.int64)
        if indexed_only or self._graph_rows == self._count:
            return rows
        return np.concatenate([rows, self._scan_candidates(query, k, self._graph_rows)])

    def _contenders(self, distances: np.ndarray, k: int) -> int:
        """How many of the graph's best-first results may still be among the k best.

        Only those are re-scored exactly (fewer rows gathered from a matrix the search did
        not touch): the k-th and every result its float32 distance might tie with, within a
        relative slack far above float32 rounding. For Dot the rounding scales with vector
        norms the distance does not show, so every result is kept.
        """
        if self.distance is Distance.DOT or len(distances) <= k:
            return len(distances)
        kth = float(distances[k - 1])
        return int(distances.searchsorted(kth + CONTENDER_SLACK * (1 + abs(kth)), "right"))

    def _finish(
        self, query: np.ndarray, rows: np.ndarray, k: int, threshold: float | None, plan: str
    ) -> SearchHits:
        rows = rows[self._alive[rows]]
        scores = scoring.exact_scores(self._vectors[rows], query, self.distance)
        if threshold is not None:
            keep = scoring.passes_threshold(scores, threshold, self.distance)
            rows, scores = rows[keep], scores[keep]
        best = scoring.order(scores, rows, self.distance)[:k]
        rows = rows[best]
        return SearchHits(
            ids=[self._ids[r] for r in rows.tolist()],
            scores=scores[best].tolist(),
            versions=self._versions[rows].tolist(),
            plan=plan,
        )

    def _finish_scored(
        self, rows: np.ndarray, scores: np.ndarray, k: int, threshold: float | None, plan: str
    ) -> SearchHits:
        """The k best of custom (bigger-is-better) scores; ties go to the older row."""
        keep = self._alive[rows]
        if threshold is not None:
            keep &= scores > threshold
        rows, scores = rows[keep], scores[keep]
        if len(rows) > k:
            kth = np.partition(-scores, k - 1)[k - 1]
            near = -scores <= kth  # everything that can make the top k, ties included
            rows, scores = rows[near], scores[near]
        best = np.lexsort((rows, -scores))[:k]
        rows = rows[best]
        return SearchHits(
            ids=[self._ids[r] for r in rows.tolist()],
            scores=scores[best].astype(np.float64).tolist(),
            versions=self._versions[rows].tolist(),
            plan=plan,
        )

    def _graph_worth_it(self, exact: bool, allowed: np.ndarray | None) -> bool:
        """The plan rule of every search: the graph serves more candidates than the scan
        threshold (of live points, or of a filter's candidates)."""
        if allowed is None:
            worth_it = len(self) > self.exact_threshold
        else:
            worth_it = len(allowed) > self.filtered_threshold
        return not exact and self._graph is not None and worth_it

    def _scan_scored(self, scorer: RecoScorer, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """Exact scan with fast float32 scores: the best k + margin live (allowed) rows, to
        be re-scored precisely (like `_scan_candidates` for nearest queries)."""
        if allowed is None:
            scores = scorer.scores(self._vectors[: self._count], fast=True)
            scores[~self._alive[: self._count]] = -np.inf
            rows = np.arange(self._count)
        else:
            rows = allowed
            scores = scoring.over_rows(partial(scorer.scores, fast=True), self._vectors, rows)
        if len(rows) <= k + RESCORE_MARGIN:
            return rows
        return rows[np.argpartition(-scores, k + RESCORE_MARGIN)[: k + RESCORE_MARGIN]]

    def _sum_rows(
        self, scorer: RecoScorer, k: int, ef: int | None, allowed: np.ndarray | None
    ) -> np.ndarray | None:
        """`sum_scores` candidates: one nearest query that ranks exactly like the sum."""
        query = scorer.sum_query()
        if query is None:
            return None
        prepared = scoring.prepare(query, self.distance)
        return self._nearest_rows(prepared, k, ef, False, False, allowed)[0]

    def _best_rows(
        self,
        scorer: RecoScorer,
        k: int,
        ef: int | None,
        allowed: np.ndarray | None,
        threshold: float | None,
    ) -> np.ndarray | None:
        """`best_score` candidates: the union of one nearest query per positive, widened
        until it provably holds the k best points (up to graph recall); None: scan exactly.

        A positive's query returns its `width` nearest rows, so every row it missed is at
        most as similar to it as the width-th of them (its bound). A row every query missed
        has a best positive of at most the largest bound B, so it scores at most `sigm(B)`.
        When k candidates score above that ceiling (or the score threshold is at least the
        ceiling) the candidates' top k is the collection's top k.
        """
        probes = scorer.probes()
        if probes is None:
            return None
        width = max(ef or self.hnsw.ef_construct, k)
        for _ in range(PROBE_ROUNDS):
            found = [
                self._nearest_rows(
                    scoring.prepare(query, self.distance), width, width, False, False, allowed
                )[0]
                for query in probes
            ]
            rows = np.unique(np.concatenate(found))
            ceiling = self._probe_ceiling(probes, found, width)
            if ceiling is None:
                return rows  # a query saw every candidate row: nothing was missed
            if threshold is not None and threshold >= ceiling:
                return rows
            if np.count_nonzero(scorer.scores(self._vectors[rows]) > ceiling) >= k:
                return rows
            width *= PROBE_GROWTH
        return None

    def _probe_ceiling(
        self, probes: list[np.ndarray], found: list[np.ndarray], width: int
    ) -> float | None:
        """The best score a row missed by every probe can have (None: none was missed)."""
        bounds = []
        for query, rows in zip(probes, found, strict=True):
            if len(rows) < width:
                return None
            similarity = core_similarity(self._vectors[rows], query, self.distance)
            bounds.append(np.partition(similarity, len(rows) - width)[len(rows) - width])
        return float(sigmoid(np.float32(max(bounds))))

    # --------------------------------------------------------------- indexing

    @property
    def needs_indexing(self) -> bool:
        if self._graph is None:
            return len(self) > self.exact_threshold
        return self._graph_outdated or self._graph_rows < self._count

    @property
    def _graph_outdated(self) -> bool:
        return not self._graph_hnsw.same_graph(self.hnsw)

    def index_step(self) -> None:
        """One bounded piece of background work: build (or rebuild) the graph, or extend it
        by a chunk."""
        if self._graph is None or self._graph_outdated:
            self._build_graph()
        else:
            self._extend_graph()

    def _new_graph(self, capacity: int, hnsw: HnswParams) -> hnswlib.Index:
        space = "l2" if self.distance is Distance.EUCLID else "ip"
        graph = hnswlib.Index(space=space, dim=self.dim)
        graph.init_index(
            max_elements=max(capacity, 1024),
            ef_construction=hnsw.ef_construct,
            M=hnsw.m,
            random_seed=HNSW_SEED,
        )
        return graph

    def _build_graph(self) -> None:
        """Build from a snapshot without blocking searches, then install under the lock."""
        with self._lock.reading():
            rows = self._count
            alive = np.flatnonzero(self._alive[:rows])
            data = self._vectors[alive].copy()
            hnsw = self.hnsw
        graph = self._new_graph(2 * rows, hnsw)
        graph.add_items(data, alive, num_threads=self.threads)
        with self._lock.writing():
            died = alive[~self._alive[alive]]
            for row in died:
                graph.mark_deleted(int(row))
            self._graph = graph
            self._graph_hnsw = hnsw
            self._graph_rows = rows
            self._graph_live = len(alive) - len(died)

    def _extend_graph(self) -> None:
        assert self._graph is not None
        with self._lock.writing():
            start = self._graph_rows
            stop = min(self._count, start + INDEX_CHUNK)
            rows = np.flatnonzero(self._alive[start:stop]) + start
            needed = self._graph.get_current_count() + len(rows)
            if needed > self._graph.get_max_elements():
                self._graph.resize_index(max(needed, 2 * self._graph.get_max_elements()))
            if len(rows):
                self._graph.add_items(self._vectors[rows], rows, num_threads=self.threads)
            self._graph_rows = stop
            self._graph_live += len(rows)
