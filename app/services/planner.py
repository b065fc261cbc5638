"""Filtered-search planning: which rows a filter allows, and how to search them.

The matching points come from the namespace's in-memory payload columns when every
condition of the filter is on a declared field (an exact count in microseconds), and from
PostgreSQL otherwise (the compiled filter, served by payload indexes where they exist).
Either way the result is cached per (namespace, vector, filter) until the segment's next
write or a change of declared fields, so a filter that repeats — a tenant, a category —
costs a dictionary lookup.

With the exact number of candidates known, the segment scans them exactly when they are few
(at most the exact threshold) and searches the graph with them as an allow-bitmap
otherwise, widening `ef` by the inverse selectivity.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.db.database import Database
from app.index.payload_columns import PayloadColumns
from app.index.registry import IndexRegistry
from app.index.segment import Segment
from app.services.cpu import CpuPool
from app.services.filtering import matching_ids


@dataclass(frozen=True, slots=True)
class Candidates:
    rows: np.ndarray
    source: str  # "cached", "memory" (payload columns) or "sql"
    seconds: float


class FilterPlanner:
    def __init__(
        self, db: Database, registry: IndexRegistry, cpu: CpuPool, cache_size: int = 512
    ) -> None:
        self.db = db
        self.registry = registry
        self.cpu = cpu
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int, Any], tuple[Any, np.ndarray]] = OrderedDict()

    async def candidates(self, namespace_id: int, segment: Segment, node: Any) -> Candidates:
        """Sorted rows of the live points matching `node`."""
        started = time.perf_counter()
        key = (namespace_id, id(segment), node)
        columns = self.registry.columns(namespace_id)
        version = (segment.generation, id(columns))  # a write, or payload indexes changed
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version:
            self._cache.move_to_end(key)
            return Candidates(hit[1], "cached", time.perf_counter() - started)
        source, rows = "memory", None
        if columns is not None:
            rows = await self.cpu.run(_rows_from_columns, columns, segment, node)
        if rows is None:
            source = "sql"
            async with self.db.connect() as conn:
                found = await matching_ids(conn, namespace_id, node)
            rows = await self.cpu.run(segment.rows_of, [wire for _, wire in found])
        self._cache[key] = (version, rows)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return Candidates(rows, source, time.perf_counter() - started)


def _rows_from_columns(columns: PayloadColumns, segment: Segment, node: Any) -> np.ndarray | None:
    """The segment rows `node` matches, if the columns can tell (None: ask PostgreSQL)."""
    found = columns.matches(node)
    if found is None:
        return None
    return segment.rows_except(found.ids) if found.negated else segment.rows_of(found.ids)
