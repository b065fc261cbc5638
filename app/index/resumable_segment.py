"""What resumable queries remember about a segment: its epoch, graph generations and caches.

The segment itself knows nothing about resumable queries, so this module keeps, per segment
object (weakly, so a dropped segment frees everything):

* an **epoch**: a random number naming this segment instance. Rows are stable labels only
  within one instance (another worker, or this one after a restart, numbers its rows in its
  own order), so every state carries the epoch and is refused elsewhere.
* a **graph generation**: a random number per `hnswlib.Index` object. A state that walked
  one graph continues only on the same object (which may have grown); any other graph means
  "the graph the state refers to is gone" and the query falls back to an exact scan.
* the **level-0 snapshot** of the graph. hnswlib exposes its neighbour lists only through
  `__getstate__`, which copies the whole index (vectors included, ~0.2-0.5 s per 100k rows),
  so it is taken once per generation and refreshed only after the graph grew noticeably;
  rows the snapshot does not cover are scanned exactly by the walk, so a stale snapshot
  costs speed, never correctness.
* squared row norms, which bound the error of fast float32 keys (rows never change, so the
  cache only ever grows).
"""

from __future__ import annotations

import secrets
import threading
import weakref
from dataclasses import dataclass

import hnswlib
import numpy as np

from app.index.segment import Segment

SNAPSHOT_LAG_ROWS = 2048  # refresh the snapshot once this many elements were added ...
SNAPSHOT_LAG_SHARE = 0.05  # ... and this share of the graph


@dataclass(frozen=True, slots=True)
class LevelZero:
    """The level-0 neighbour lists of one graph, translated from internal ids to rows.

    Rows, not hnswlib's internal ids, because internal ids depend on the arrival order
    inside a multi-threaded `add_items` and differ between graphs, while a row names the
    same point for the segment's whole life. Only the links are kept (128 B per row at
    M=16); the vectors are read from the segment, so the snapshot costs no second copy.
    """

    generation: int
    elements: int  # graph elements when the snapshot was taken
    links: np.ndarray  # (rows, max_M0) int32 rows, -1 where there is no link
    in_graph: np.ndarray  # (rows,) bool

    @property
    def rows(self) -> int:
        return len(self.in_graph)

    @classmethod
    def read(cls, graph: hnswlib.Index, generation: int) -> LevelZero:
        """Copy the graph once, view its level-0 records zero-copy, keep only the links."""
        params = graph.__getstate__()[0]
        count, size = params["cur_element_count"], params["size_data_per_element"]
        width, base = params["max_M0"], params["offset_level0"]
        raw = params["data_level0"]

        def field(dtype: str, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]):
            return np.ndarray(shape, dtype, buffer=raw, offset=offset, strides=strides)

        degree = field("<u2", base, (count,), (size,))
        internal = field("<u4", base + 4, (count, width), (size, 4))
        labels = field("<u8", params["label_offset"], (count,), (size,)).astype(np.int64)
        valid = np.arange(width) < degree[:, None]
        rows = int(labels.max()) + 1 if count else 0
        links = np.full((rows, width), -1, dtype=np.int32)
        links[labels] = np.where(valid, labels[np.where(valid, internal, 0)], -1)
        in_graph = np.zeros(rows, dtype=bool)
        in_graph[labels] = True
        return cls(generation, count, links, in_graph)

    def neighbours(self, rows: np.ndarray) -> np.ndarray:
        """Rows linked from `rows` (repeats possible when several rows are given)."""
        rows = rows[rows < self.rows]
        links = self.links[rows].ravel()
        return links[links >= 0].astype(np.int64)


class SegmentInfo:
    """Epoch, graph generation and caches of one segment (see the module docstring)."""

    def __init__(self) -> None:
        self.epoch = secrets.randbits(64)
        self._lock = threading.Lock()
        self._graph: weakref.ref[hnswlib.Index] | None = None
        self._generation = 0
        self._level0: LevelZero | None = None
        self._sq_norms = np.zeros(0, dtype=np.float64)

    def generation(self, segment: Segment) -> int:
        """The current graph's generation (0 without a graph). Caller holds the read lock."""
        graph = segment._graph
        if graph is None:
            return 0
        with self._lock:
            if self._graph is None or self._graph() is not graph:
                self._graph = weakref.ref(graph)
                self._generation = secrets.randbits(63) + 1
                self._level0 = None
            return self._generation

    def level_zero(self, segment: Segment) -> LevelZero:
        """The cached snapshot of the current graph, re-read if it lags too far behind.

        Caller holds the read lock, which keeps `add_items` (a writer) out while hnswlib
        copies itself. Queries arriving meanwhile wait for that one copy rather than each
        making their own.
        """
        generation = self.generation(segment)
        graph = segment._graph
        assert graph is not None
        with self._lock:
            snapshot = self._level0
            if snapshot is None or snapshot.generation != generation or _lags(snapshot, graph):
                snapshot = self._level0 = LevelZero.read(graph, generation)
            return snapshot

    def sq_norms(self, segment: Segment, rows: int) -> np.ndarray:
        """Squared norms of rows [0, rows), in float64. Caller holds the read lock."""
        with self._lock:
            done = len(self._sq_norms)
            if done < rows:
                fresh = segment._vectors[done:rows]
                extra = np.einsum("ij,ij->i", fresh, fresh, dtype=np.float64)
                self._sq_norms = np.concatenate([self._sq_norms, extra])
            return self._sq_norms[:rows]


def _lags(snapshot: LevelZero, graph: hnswlib.Index) -> bool:
    behind = graph.get_current_count() - snapshot.elements
    return behind > max(SNAPSHOT_LAG_ROWS, SNAPSHOT_LAG_SHARE * snapshot.elements)


_INFOS: weakref.WeakKeyDictionary[Segment, SegmentInfo] = weakref.WeakKeyDictionary()
_INFOS_LOCK = threading.Lock()


def segment_info(segment: Segment) -> SegmentInfo:
    """The info of `segment`, created on first use."""
    with _INFOS_LOCK:
        info = _INFOS.get(segment)
        if info is None:
            info = _INFOS[segment] = SegmentInfo()
        return info
