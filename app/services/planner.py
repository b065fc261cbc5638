"""Filtered-search planning: which rows a filter allows, and how to search them.

The matching ids come from PostgreSQL (the compiled filter, served by payload indexes where
they exist) and are cached per (namespace, vector, filter) until the segment's next write,
so a filter that repeats — a tenant, a category — costs a dictionary lookup after its first
use. The segment then scans the candidates exactly when they are few (at most the exact
threshold) and searches the graph with the candidates as an allow-bitmap otherwise.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.db.database import Database
from app.index.segment import Segment
from app.services.cpu import CpuPool
from app.services.filtering import matching_ids


@dataclass(frozen=True, slots=True)
class Candidates:
    rows: np.ndarray
    cached: bool
    seconds: float


class FilterPlanner:
    def __init__(self, db: Database, cpu: CpuPool, cache_size: int = 512) -> None:
        self.db = db
        self.cpu = cpu
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int, Any], tuple[int, np.ndarray]] = OrderedDict()

    async def candidates(self, namespace_id: int, segment: Segment, node: Any) -> Candidates:
        """Sorted rows of the live points matching `node`."""
        started = time.perf_counter()
        key = (namespace_id, id(segment), node)
        generation = segment.generation
        hit = self._cache.get(key)
        if hit is not None and hit[0] == generation:
            self._cache.move_to_end(key)
            return Candidates(hit[1], True, time.perf_counter() - started)
        async with self.db.connect() as conn:
            found = await matching_ids(conn, namespace_id, node)
        rows = await self.cpu.run(segment.rows_of, [wire for _, wire in found])
        self._cache[key] = (generation, rows)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return Candidates(rows, False, time.perf_counter() - started)
