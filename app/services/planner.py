"""Filtered-search planning: which rows a filter allows, and how to search them.

1. When every condition of the filter is on a declared field, the namespace's in-memory
   payload columns give the exact matches in microseconds.
2. Otherwise, in a segment too large to scan, a random sample of 512 live points is
   checked in PostgreSQL (one query by primary key) to estimate the share of matches.
   A broad filter (over 5 % and over the segment's `filtered_threshold`) is not listed: the graph is
   searched unfiltered and the results confirmed in PostgreSQL, widening the search until
   `limit` of them match (`SearchService`).
3. Else PostgreSQL lists the matches (the compiled filter, served by payload indexes).

Listed matches are cached per (namespace, vector, filter) until the segment's next write or
a change of declared fields, so a filter that repeats — a tenant, a category — costs a
dictionary lookup. With their exact number known, the segment scans them exactly when they
are few (at most `filtered_threshold`) and searches the graph with them as an allow-bitmap
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
from app.models import PointId
from app.services.cpu import CpuPool
from app.services.filtering import matching_ids

SAMPLE_SIZE = 512  # live points whose match a sampled estimate checks
POSTFILTER_SHARE = 0.05  # from this estimated share of matches on, search first, check after


@dataclass(frozen=True, slots=True)
class Candidates:
    """The rows a filter allows, or (`rows` None) the advice to search the graph unfiltered
    and confirm the results, because listing the matches would cost more than checking."""

    rows: np.ndarray | None
    source: str  # "cached", "memory" (payload columns), "sql" or "sampled"
    seconds: float
    estimate: int  # matching live points: exact, or from a sample when `source` is "sampled"


class FilterPlanner:
    def __init__(
        self, db: Database, registry: IndexRegistry, cpu: CpuPool, cache_size: int = 512
    ) -> None:
        self.db = db
        self.registry = registry
        self.cpu = cpu
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int, Any], tuple[Any, Candidates]] = OrderedDict()

    async def candidates(
        self, namespace_id: int, segment: Segment, node: Any, may_sample: bool = True
    ) -> Candidates:
        """The live points matching `node`: exact from payload columns when they can tell;
        otherwise, in a segment too large to scan, a sample estimates the share of matches
        first, and a broad filter is left to `confirm` (when `may_sample`); else SQL."""
        started = time.perf_counter()
        key = (namespace_id, id(segment), node)
        columns = self.registry.columns(namespace_id)
        version = (segment.generation, id(columns))  # a write, or payload indexes changed
        hit = self._cache.get(key)
        if hit is not None and hit[0] == version and (may_sample or hit[1].rows is not None):
            self._cache.move_to_end(key)
            return Candidates(hit[1].rows, "cached", time.perf_counter() - started, hit[1].estimate)
        found = await self._plan(namespace_id, segment, node, columns, may_sample)
        self._cache[key] = (version, found)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return Candidates(found.rows, found.source, time.perf_counter() - started, found.estimate)

    async def _plan(
        self,
        namespace_id: int,
        segment: Segment,
        node: Any,
        columns: PayloadColumns | None,
        may_sample: bool,
    ) -> Candidates:
        if columns is not None:
            rows = await self.cpu.run(_rows_from_columns, columns, segment, node)
            if rows is not None:
                return Candidates(rows, "memory", 0.0, len(rows))
        if may_sample and len(segment) > segment.filtered_threshold:
            estimate = await self._estimate(namespace_id, segment, node)
            if estimate > max(segment.filtered_threshold, POSTFILTER_SHARE * len(segment)):
                return Candidates(None, "sampled", 0.0, estimate)
        async with self.db.connect() as conn:
            indexed = self.registry.declared_fields(namespace_id)
            found = await matching_ids(conn, namespace_id, node, indexed=indexed, cpu=self.cpu)
        rows = await self.cpu.run(segment.rows_of, [wire for _, wire in found])
        return Candidates(rows, "sql", 0.0, len(rows))

    async def _estimate(self, namespace_id: int, segment: Segment, node: Any) -> int:
        """Matching live points, from how many of a random sample of them match."""
        sample = await self.cpu.run(segment.sample_ids, SAMPLE_SIZE)
        matched = await self.confirm(namespace_id, node, sample)
        return round(len(matched) / max(len(sample), 1) * len(segment))

    async def confirm(self, namespace_id: int, node: Any, ids: list[PointId]) -> set[PointId]:
        """Which of these points match `node` (one SQL query over their ids)."""
        async with self.db.connect() as conn:
            texts = [str(pid) for pid in ids]
            indexed = self.registry.declared_fields(namespace_id)
            found = await matching_ids(conn, namespace_id, node, texts, indexed, self.cpu)
        return {wire for _, wire in found}


def _rows_from_columns(columns: PayloadColumns, segment: Segment, node: Any) -> np.ndarray | None:
    """The segment rows `node` matches, if the columns can tell (None: ask PostgreSQL)."""
    found = columns.matches(node)
    if found is None:
        return None
    return segment.rows_except(found.ids) if found.negated else segment.rows_of(found.ids)
