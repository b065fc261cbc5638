"""All in-memory segments of this worker, and the background thread that indexes them.

Segments are keyed by (namespace id, vector name); namespace ids are global, so a key never
outlives a dropped collection. The indexer thread builds and extends hnswlib graphs so that
no request ever waits for a graph build.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable

from app.index.payload_columns import PayloadColumns
from app.index.segment import Segment
from app.index.sparse import SparseIndex
from app.models import CollectionConfig, VectorParams

log = logging.getLogger(__name__)

SegmentKey = tuple[int, str]


class IndexRegistry:
    def __init__(self, exact_threshold: int | None, build_threads: int = 2) -> None:
        self.exact_threshold = exact_threshold  # None: each collection's full_scan_threshold
        self.build_threads = build_threads
        self._segments: dict[SegmentKey, Segment] = {}
        self._sparse: dict[SegmentKey, SparseIndex] = {}  # built as written: no indexer work
        self._columns: dict[int, PayloadColumns] = {}  # namespace id -> declared fields
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # `building()` is asked four times a second (workers publish it) and walks every
        # segment: its answer is kept until something it depends on changes. `next` on a
        # count is atomic, so a change on the indexer thread is never lost.
        self._changes = itertools.count()
        self._change = next(self._changes)
        self._building: tuple[int, set[int]] | None = None

    def get(self, namespace_id: int, vector_name: str) -> Segment | None:
        return self._segments.get((namespace_id, vector_name))

    def ensure(self, namespace_id: int, vector_name: str, params: VectorParams) -> Segment:
        """The segment of (namespace, vector), made on first use (`params` are used then)."""
        key = (namespace_id, vector_name)
        segment = self._segments.get(key)
        if segment is None:
            segment = Segment(
                params.size,
                params.distance,
                params.hnsw,
                self.exact_threshold,
                threads=self.build_threads,
            )
            self._segments[key] = segment
            self._changed()
        return segment

    def get_sparse(self, namespace_id: int, vector_name: str) -> SparseIndex | None:
        return self._sparse.get((namespace_id, vector_name))

    def ensure_sparse(self, namespace_id: int, vector_name: str) -> SparseIndex:
        """The inverted index of (namespace, sparse vector), made on first use. Its IDF
        modifier is a property of the query, not of the index: nothing to reconfigure."""
        key = (namespace_id, vector_name)
        index = self._sparse.get(key)
        if index is None:
            index = self._sparse.setdefault(key, SparseIndex())
        return index

    def configure(self, namespace_ids: Iterable[int], config: CollectionConfig) -> None:
        """Give these namespaces a segment per dense vector of `config` and an inverted index
        per sparse one: missing ones are made, segments with different HNSW parameters
        reconfigured (graphs rebuilt meanwhile).

        Only the catalog's keepers call this, under its lock (collection changes, the change
        feed). Write paths call `ensure` with the settings they read, perhaps on a pool
        thread as a change is applied: a stale read must not reconfigure a segment back.
        """
        changed = False
        for namespace_id in namespace_ids:
            for vector_name in config.sparse_vectors:
                self.ensure_sparse(namespace_id, vector_name)
            for vector_name, params in config.vectors.items():
                segment = self.ensure(namespace_id, vector_name, params)
                if segment.hnsw != params.hnsw:
                    segment.reconfigure(params.hnsw)
                    changed = True
        if changed:
            self.notify()

    def columns(self, namespace_id: int) -> PayloadColumns | None:
        """The in-memory payload columns of a namespace (None: no declared fields)."""
        return self._columns.get(namespace_id)

    def declared_fields(self, namespace_id: int) -> frozenset[str]:
        """The namespace's declared payload fields (its columns exist exactly when declared)."""
        columns = self._columns.get(namespace_id)
        return columns.fields if columns is not None else frozenset()

    def set_columns(self, namespace_id: int, columns: PayloadColumns | None) -> None:
        if columns is None:
            self._columns.pop(namespace_id, None)
        else:
            self._columns[namespace_id] = columns

    def drop_namespaces(self, namespace_ids: set[int]) -> None:
        for key in [key for key in self._segments if key[0] in namespace_ids]:
            del self._segments[key]
        for key in [key for key in self._sparse if key[0] in namespace_ids]:
            del self._sparse[key]
        for namespace_id in namespace_ids:
            self._columns.pop(namespace_id, None)
        self._changed()

    def busy(self, namespace_ids: set[int]) -> bool:
        """True while any segment of these namespaces still has graph work queued."""
        return not namespace_ids.isdisjoint(self.building())

    def building(self) -> set[int]:
        """The namespaces with a segment that still has graph work queued."""
        change, known = self._change, self._building
        if known is not None and known[0] == change:
            return known[1]
        building = {key[0] for key, s in list(self._segments.items()) if s.needs_indexing}
        self._building = (change, building)  # stale at once if a change came meanwhile
        return building

    def _changed(self) -> None:
        """A segment was written, made, dropped or indexed: `building()` must look again."""
        self._change = next(self._changes)

    # ------------------------------------------------------------------ indexer

    def notify(self) -> None:
        """Wake the indexer after a write."""
        self._changed()
        with self._wake:
            self._wake.notify()

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="waypoint-indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._has_work():
                    self._wake.wait(timeout=1.0)
                if self._stopping:
                    return
            for segment in [s for s in list(self._segments.values()) if s.needs_indexing]:
                try:
                    segment.index_step()
                except Exception:
                    log.exception("indexing a segment failed")
                self._changed()

    def _has_work(self) -> bool:
        return any(segment.needs_indexing for segment in list(self._segments.values()))
