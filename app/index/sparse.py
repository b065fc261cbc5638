"""The exact inverted index of one (collection, namespace, sparse vector name) in memory.

A sparse vector is (indices, values): uint32 dimensions, strictly increasing, and float32
values. A stored vector's score for a query is the dot product over the dimensions they
share, summed in float64; a vector that shares no dimension with the query is not a result
at all, while one whose shared products come to 0 is, with score 0 (Qdrant and Upstash
agree). With `idf=True` (Qdrant's `modifier: "idf"`) each query value is first multiplied by
`ln((N - df + 0.5) / (df + 0.5) + 1)`, df being how many live vectors have that dimension.

Rows work like the dense `Segment`'s: an upsert of an existing point retires its old row and
appends a new one, so a row number is a stable label never reused within this index, each
row keeps the seq of the write that made it, and ties go to the older row.

Storage:

* a **posting** per dimension: the rows having it (int32, ascending) and their values
  (float32), in arrays whose capacity doubles, so appends are amortised O(1). A retired row
  stays in its postings and is masked by `_alive`; a posting is compacted (its dead entries
  dropped) as soon as more than half of it is dead, so it never holds more dead entries
  than live ones and every compaction is paid for by as many deletes as it copies entries.
* a **forward store** (CSR: each row's start and length into one array of dimensions and
  one of values), for `get` and for finding a retired row's postings. It is compacted as a
  whole once its dead entries outnumber its live ones.

Memory: a live non-zero costs 8 B in its posting (int32 row, float32 value) and 8 B in the
forward store (uint32 dimension, float32 value), 16 B in all, and up to about twice that
between compactions and capacity doublings. Every row ever written costs 21 B of arrays
(alive flag, seq, start, length) plus its id; a live point adds a dict entry; each dimension
present costs a posting object with two arrays, a few hundred bytes.

Scoring gathers the postings of the query's dimensions (P entries) and sums them per row,
with `np.unique` + `np.bincount` over P when P is small against the rows, or one dense
`np.bincount` over all rows when that is cheaper; either way a row's contributions are added
in the query's dimension order, so a row's score has the same bits on every call.

Threading: one `ReadWriteLock`, as for segments. Writes (`upsert`, `delete`, compactions)
hold it for writing; reads of the postings hold it for reading, so searches run in parallel
with each other and always see a state between two writes (a replace is never seen half
done). `allowed` filters run after the lock is released, on copies, so a filter may call
back into this index. Row-level lookups (`point_ids`, `rows_written_by`) take no lock:
rows are never reused, and a row's id and seq never change once written.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TypeAlias

import numpy as np

from app.index.locks import ReadWriteLock
from app.models import PointId

# Dense accumulation (one bincount over every row) once the query's postings hold at least
# 1/DENSE_SHARE entries per row; below that the sort-based sparse accumulation wins.
DENSE_SHARE = 16
MIN_POSTING_CAPACITY = 4
MIN_FORWARD_DEAD = 4096  # a forward store with fewer dead entries is never compacted
MAX_ROWS = 2**31 - 1  # postings hold rows as int32
MAX_DIMENSION = 2**32 - 1

Allowed: TypeAlias = Callable[[np.ndarray], np.ndarray] | np.ndarray | Collection[PointId]
SparsePoint: TypeAlias = tuple[
    PointId, Sequence[int] | np.ndarray, Sequence[float] | np.ndarray, int
]


class _Posting:
    """The rows having one dimension, ascending, and their values; `dead` of them retired."""

    __slots__ = ("dead", "rows", "size", "values")

    def __init__(self) -> None:
        self.rows = np.empty(0, dtype=np.int32)
        self.values = np.empty(0, dtype=np.float32)
        self.size = 0
        self.dead = 0

    @property
    def live(self) -> int:
        return self.size - self.dead

    def extend(self, rows: np.ndarray, values: np.ndarray) -> None:
        stop = self.size + len(rows)
        if stop > len(self.rows):
            capacity = max(stop, 2 * len(self.rows), MIN_POSTING_CAPACITY)
            self.rows = _grown(self.rows, self.size, capacity)
            self.values = _grown(self.values, self.size, capacity)
        self.rows[self.size : stop] = rows
        self.values[self.size : stop] = values
        self.size = stop

    def compact(self, alive: np.ndarray) -> None:
        """Drop the retired rows (new arrays: views taken before stay as they were)."""
        keep = alive[self.rows[: self.size]]
        self.rows = self.rows[: self.size][keep]
        self.values = self.values[: self.size][keep]
        self.size = len(self.rows)
        self.dead = 0


class SparseIndex:
    def __init__(self) -> None:
        self._lock = ReadWriteLock()
        self._postings: dict[int, _Posting] = {}
        self._ids: list[PointId] = []  # per row, kept after retirement (rows are labels)
        self._row_of: dict[PointId, int] = {}
        self._count = 0  # rows ever written
        self._alive = np.zeros(0, dtype=bool)
        self._seqs = np.zeros(0, dtype=np.int64)  # the seq that wrote each row
        self._starts = np.zeros(0, dtype=np.int64)  # each row's slice of the forward store
        self._lengths = np.zeros(0, dtype=np.int32)
        self._fwd_dims = np.zeros(0, dtype=np.uint32)
        self._fwd_values = np.zeros(0, dtype=np.float32)
        self._fwd_used = 0
        self._fwd_dead = 0
        self.generation = 0  # bumped by every write: cached filter results check it

    # ----------------------------------------------------------------- writes

    def upsert(
        self,
        point_id: PointId,
        indices: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        seq: int,
    ) -> bool:
        """Insert or replace one point's vector; False if it already holds a newer write."""
        return self.upsert_many([(point_id, indices, values, seq)]) == 1

    def upsert_many(self, points: Iterable[SparsePoint]) -> int:
        """Store several points under one write-lock hold; returns how many were applied.

        A write whose seq is not newer than the point's current row is ignored (the change
        feed may deliver a write the write path already applied), and so is all but the
        newest write of a point within the batch.
        """
        latest: dict[PointId, tuple[np.ndarray, np.ndarray, int]] = {}
        for point_id, indices, values, seq in points:
            dims, vals = checked(indices, values)  # validated before the lock is taken
            held = latest.get(point_id)
            if held is None or seq >= held[2]:
                latest[point_id] = (dims, vals, int(seq))
        with self._lock.writing():
            fresh = [
                (pid, *entry) for pid, entry in latest.items() if self._is_newer(pid, entry[2])
            ]
            if fresh:
                for pid, *_ in fresh:
                    self._retire(pid)
                self._append(fresh)
                self._maybe_compact_forward()
                self.generation += 1
            return len(fresh)

    def delete(self, point_id: PointId, seq: int | None = None) -> bool:
        """Remove a point (with `seq`, the delete's, only if its row was written before)."""
        return self.delete_many([point_id], None if seq is None else [seq]) == 1

    def delete_many(self, point_ids: Sequence[PointId], seqs: Sequence[int] | None = None) -> int:
        """Remove several points under one write-lock hold; returns how many were live."""
        with self._lock.writing():
            if seqs is not None:
                pairs = zip(point_ids, seqs, strict=True)
                point_ids = [pid for pid, seq in pairs if self._is_newer(pid, seq)]
            removed = sum(self._retire(pid) for pid in point_ids)
            if removed:
                self._maybe_compact_forward()
                self.generation += 1
            return removed

    def _is_newer(self, point_id: PointId, seq: int) -> bool:
        row = self._row_of.get(point_id)
        return row is None or seq > self._seqs[row]

    def _retire(self, point_id: PointId) -> bool:
        """Mask the point's row, count it dead in its postings, compact those half dead."""
        row = self._row_of.pop(point_id, None)
        if row is None:
            return False
        self._alive[row] = False
        start, length = int(self._starts[row]), int(self._lengths[row])
        for dim in self._fwd_dims[start : start + length].tolist():
            posting = self._postings[dim]
            posting.dead += 1
            if 2 * posting.dead > posting.size:
                posting.compact(self._alive)
                if not posting.size:
                    del self._postings[dim]
        self._lengths[row] = 0
        self._fwd_dead += length
        return True

    def _append(self, points: list[tuple[PointId, np.ndarray, np.ndarray, int]]) -> None:
        """New rows for `points`: the forward store, then every posting they touch."""
        start, stop = self._count, self._count + len(points)
        if stop > MAX_ROWS:
            raise OverflowError("a sparse index holds at most 2**31 - 1 rows")
        self._reserve_rows(stop)
        lengths = np.fromiter((len(dims) for _, dims, _, _ in points), np.int64, len(points))
        dims = np.concatenate([p[1] for p in points])
        values = np.concatenate([p[2] for p in points])
        rows = np.arange(start, stop, dtype=np.int64)
        self._alive[start:stop] = True
        self._seqs[start:stop] = [p[3] for p in points]
        self._lengths[start:stop] = lengths
        self._starts[start:stop] = self._fwd_used + np.cumsum(lengths) - lengths
        self._reserve_forward(self._fwd_used + len(dims))
        self._fwd_dims[self._fwd_used : self._fwd_used + len(dims)] = dims
        self._fwd_values[self._fwd_used : self._fwd_used + len(dims)] = values
        self._fwd_used += len(dims)
        for row, (pid, *_) in zip(rows.tolist(), points, strict=True):
            self._ids.append(pid)
            self._row_of[pid] = row
        self._count = stop
        self._extend_postings(dims, np.repeat(rows, lengths), values)

    def _extend_postings(self, dims: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
        """Append (row, value) entries to their dimensions' postings, one slice per dimension
        (a stable sort by dimension keeps each posting's rows ascending)."""
        order = np.argsort(dims, kind="stable")
        dims, rows, values = dims[order], rows[order], values[order]
        present, firsts = np.unique(dims, return_index=True)
        bounds = [*firsts.tolist(), len(dims)]
        for i, dim in enumerate(present.tolist()):
            posting = self._postings.get(dim)
            if posting is None:
                posting = self._postings[dim] = _Posting()
            posting.extend(rows[bounds[i] : bounds[i + 1]], values[bounds[i] : bounds[i + 1]])

    def _reserve_rows(self, rows: int) -> None:
        capacity = len(self._alive)
        if rows <= capacity:
            return
        capacity = max(rows, 2 * capacity, 1024)
        self._alive = _grown(self._alive, self._count, capacity)
        self._seqs = _grown(self._seqs, self._count, capacity)
        self._starts = _grown(self._starts, self._count, capacity)
        self._lengths = _grown(self._lengths, self._count, capacity)

    def _reserve_forward(self, entries: int) -> None:
        capacity = len(self._fwd_dims)
        if entries <= capacity:
            return
        capacity = max(entries, 2 * capacity, 1024)
        self._fwd_dims = _grown(self._fwd_dims, self._fwd_used, capacity)
        self._fwd_values = _grown(self._fwd_values, self._fwd_used, capacity)

    def _maybe_compact_forward(self) -> None:
        """Rewrite the forward store without its dead entries once they outnumber the live
        ones (live rows keep their numbers; only their starts move)."""
        live_entries = self._fwd_used - self._fwd_dead
        if self._fwd_dead <= max(live_entries, MIN_FORWARD_DEAD):
            return
        live = np.flatnonzero(self._alive[: self._count])
        lengths = self._lengths[live].astype(np.int64)
        starts = np.cumsum(lengths) - lengths
        source = np.repeat(self._starts[live] - starts, lengths) + np.arange(live_entries)
        self._fwd_dims = self._fwd_dims[source]
        self._fwd_values = self._fwd_values[source]
        self._starts[live] = starts
        self._starts[: self._count][~self._alive[: self._count]] = 0
        self._fwd_used, self._fwd_dead = live_entries, 0

    # ------------------------------------------------------------------ reads

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, point_id: object) -> bool:
        return point_id in self._row_of

    def get(self, point_id: PointId) -> tuple[np.ndarray, np.ndarray] | None:
        """The point's stored (uint32 indices, float32 values), copies; None if absent."""
        with self._lock.reading():
            row = self._row_of.get(point_id)
            if row is None:
                return None
            start, stop = int(self._starts[row]), int(self._starts[row] + self._lengths[row])
            return self._fwd_dims[start:stop].copy(), self._fwd_values[start:stop].copy()

    def seq_of(self, point_id: PointId) -> int | None:
        """The seq of the write that set this point's current vector."""
        row = self._row_of.get(point_id)
        return None if row is None else int(self._seqs[row])

    def max_seq(self) -> int:
        """The newest write this index holds (0 when empty)."""
        with self._lock.reading():
            return int(self._seqs[: self._count].max()) if self._count else 0

    def rows_written_by(self, rows: np.ndarray) -> np.ndarray:
        """The write seq of each row: unlike row numbers, the same on every worker."""
        return self._seqs[rows]

    def point_ids(self, rows: np.ndarray) -> list[PointId]:
        """The point each row was written for (rows from `scores`)."""
        ids = self._ids
        return [ids[row] for row in np.asarray(rows).tolist()]

    def live_rows(self) -> np.ndarray:
        """Every live row, ascending (int64): the points a scan of the whole index scores."""
        with self._lock.reading():
            return np.flatnonzero(self._alive[: self._count]).astype(np.int64)

    def rows_of(self, point_ids: Collection[PointId]) -> np.ndarray:
        """Sorted rows of the live points among `point_ids` (a filter's matches)."""
        with self._lock.reading():
            found = [row for pid in point_ids if (row := self._row_of.get(pid)) is not None]
        return np.unique(np.asarray(found, dtype=np.int64))

    def document_frequency(self, dims: Sequence[int] | np.ndarray) -> np.ndarray:
        """How many live vectors have each dimension (int64, 0 for unknown ones)."""
        with self._lock.reading():
            return self._document_frequency(np.asarray(dims, dtype=np.int64))

    def _document_frequency(self, dims: np.ndarray) -> np.ndarray:
        postings = self._postings
        counts = ((p.live if (p := postings.get(dim)) is not None else 0) for dim in dims.tolist())
        return np.fromiter(counts, np.int64, len(dims))

    def idf(self, dims: Sequence[int] | np.ndarray, total_points: int | None = None) -> np.ndarray:
        """Qdrant's IDF of each dimension in float64; `total_points` defaults to `len(self)`."""
        with self._lock.reading():
            return self._idf(np.asarray(dims, dtype=np.int64), total_points)

    def _idf(self, dims: np.ndarray, total_points: int | None) -> np.ndarray:
        n = float(len(self) if total_points is None else total_points)
        df = self._document_frequency(dims).astype(np.float64)
        return np.log((n - df + 0.5) / (df + 0.5) + 1.0)

    def scores(
        self,
        indices: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        *,
        allowed: Allowed | None = None,
        idf: bool = False,
        total_points: int | None = None,
        precise: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every live vector sharing a dimension with the query: (rows ascending, int64;
        float64 scores). Costs in proportion to the query's postings, not the index size
        (except when those cover a large share of the rows: then one pass over all rows).

        `allowed` keeps some of them: a callable mapping rows to a boolean mask (like the
        dense segments' session filters), an array of allowed rows (from `rows_of`), or a
        collection of point ids (checked per candidate, the slowest form).

        The query's values are float32 like stored ones; `precise` takes them as float64
        weights as given (a computed query, such as recommend's average of examples).
        """
        dims, query = checked(indices, values)
        with self._lock.reading():
            weights = np.array(values, dtype=np.float64) if precise else query.astype(np.float64)
            if idf:
                weights *= self._idf(dims.astype(np.int64), total_points)
            rows, sums = self._accumulate(dims, weights)
        if allowed is not None and len(rows):
            keep = self._allowed_mask(rows, allowed)
            rows, sums = rows[keep], sums[keep]
        return rows, sums

    def search(
        self,
        indices: Sequence[int] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        k: int,
        *,
        allowed: Allowed | None = None,
        idf: bool = False,
        total_points: int | None = None,
        score_threshold: float | None = None,
    ) -> list[tuple[PointId, float]]:
        """The `k` best (point id, score), best first; ties go to the older row.

        `score_threshold` is Qdrant's strict one: only scores above it are kept.
        """
        if k <= 0:
            return []
        rows, sums = self.scores(
            indices, values, allowed=allowed, idf=idf, total_points=total_points
        )
        if score_threshold is not None:
            keep = sums > score_threshold
            rows, sums = rows[keep], sums[keep]
        best = top_k(rows, sums, k)
        return list(zip(self.point_ids(rows[best]), sums[best].tolist(), strict=True))

    def _accumulate(self, dims: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sum the weighted postings of `dims` per live row (caller holds the read lock)."""
        parts = []
        for dim, weight in zip(dims.tolist(), weights.tolist(), strict=True):
            posting = self._postings.get(dim)
            if posting is not None:
                size = posting.size
                parts.append((posting.rows[:size], posting.values[:size], weight))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        rows = np.concatenate([p[0] for p in parts])
        # float64 before the product: float32 * a Python float stays float32 in numpy 2
        products = np.concatenate([p[1].astype(np.float64) * p[2] for p in parts])
        live = self._alive[rows]
        rows, products = rows[live], products[live]
        if len(rows) * DENSE_SHARE >= self._count:
            hit = np.zeros(self._count, dtype=bool)
            hit[rows] = True
            found = np.flatnonzero(hit)
            return found, np.bincount(rows, products, self._count)[found]
        found, inverse = np.unique(rows, return_inverse=True)
        return found.astype(np.int64), np.bincount(inverse, products, len(found))

    def _allowed_mask(self, rows: np.ndarray, allowed: Allowed) -> np.ndarray:
        if callable(allowed):
            return np.asarray(allowed(rows), dtype=bool)
        if isinstance(allowed, np.ndarray):
            return np.isin(rows, allowed)
        ids = self._ids
        return np.fromiter((ids[row] in allowed for row in rows.tolist()), bool, len(rows))


def checked(
    indices: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 indices, float32 values), or ValueError. Validation proper happens at the
    API; this guards the index itself: an unsorted or repeated dimension would be counted
    twice in its posting and corrupt scores and document frequencies."""
    dims = np.asarray(indices)
    vals = np.asarray(values, dtype=np.float32)
    if dims.ndim != 1 or vals.shape != dims.shape:
        raise ValueError("sparse indices and values must be 1-d and of the same length")
    if not len(dims):
        return np.zeros(0, dtype=np.uint32), vals
    if dims.dtype.kind not in "iu":
        raise ValueError("sparse indices must be integers")
    if dims[0] < 0 or dims[-1] > MAX_DIMENSION or np.any(dims[1:] <= dims[:-1]):
        raise ValueError("sparse indices must be strictly increasing uint32")
    return dims.astype(np.uint32), vals


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores, best first; ties go to the older (smaller) row."""
    if len(rows) > k:
        kth = np.partition(-scores, k - 1)[k - 1]
        near = np.flatnonzero(-scores <= kth)  # everything that can make the top k
        return near[np.lexsort((rows[near], -scores[near]))[:k]]
    return np.lexsort((rows, -scores))[:k]


def _grown(array: np.ndarray, used: int, capacity: int) -> np.ndarray:
    grown = np.zeros(capacity, dtype=array.dtype)
    grown[:used] = array[:used]
    return grown
