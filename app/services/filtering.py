"""The services' one door to the filter package: parse filters, find the points they match
(SQL, with an in-memory re-check where SQL cannot be exact), re-check single points."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import offload, repository
from app.db.functions import among
from app.db.tables import points
from app.errors import BadRequest
from app.filters import Point, SqlFilter, compile_predicate, compile_sql, filter_cost
from app.models import Collection, PointId
from app.services.cpu import CpuPool


def parse_filter(raw: Any, language: str) -> Any:
    """The filter AST of a filter as sent (Qdrant JSON or an Upstash string); None if empty."""
    if not raw:
        return None
    from app.filters import parse_qdrant_filter, parse_upstash_filter

    if language == "upstash":
        if not isinstance(raw, str):
            raise BadRequest("filter must be a string")
        return parse_upstash_filter(raw)
    if not isinstance(raw, dict):
        raise BadRequest("Wrong input: filter must be an object")
    return parse_qdrant_filter(raw)


LONG_FILTER_TEXT = 1024  # characters of filter text parsed on the event loop at most
HEAVY_FILTER = 16  # filters of this `filter_cost` and more have their SQL made off the loop


async def parse_filter_off_loop(raw: Any, language: str, cpu: CpuPool | None) -> Any:
    """`parse_filter`, in `cpu` for a long Upstash filter text: tokenizing one costs the
    event loop time in proportion to its length (a long `IN` list)."""
    if cpu is not None and isinstance(raw, str) and len(raw) > LONG_FILTER_TEXT:
        return await cpu.run(parse_filter, raw, language)
    return parse_filter(raw, language)


@lru_cache(maxsize=1024)
def compiled(node: Any, indexed: frozenset[str] = frozenset()) -> SqlFilter:
    """The SQL of a filter, built once: a filter that repeats (a tenant, a category) is
    compiled on its first use only. AST nodes are frozen, so they key the cache."""
    return compile_sql(node, indexed=indexed)


def offload_pool(node: Any, cpu: CpuPool | None) -> CpuPool | None:
    """Where to build, render and re-check a filter's SQL: `cpu` for a filter with enough
    conditions to hold up the event loop (see `app.db.offload`), else None (on the loop,
    where SQLAlchemy's statement cache serves repeated small filters)."""
    if cpu is None or node is None or filter_cost(node, HEAVY_FILTER) < HEAVY_FILTER:
        return None
    return cpu


async def matching_ids(
    conn: AsyncConnection,
    namespace_id: int,
    node: Any,
    ids: list[str] | None = None,
    indexed: frozenset[str] = frozenset(),
    cpu: CpuPool | None = None,
) -> list[tuple[str, PointId]]:
    """(id text, wire id) of every point of the namespace (or among `ids`, id texts) that
    `node` matches; `indexed`: the collection's declared fields (see `compile_sql`); `cpu`:
    where a large filter's work goes instead of the event loop."""
    pool = offload_pool(node, cpu)
    sql = await offload.run_in(pool, compiled, node, indexed)
    return await _matching(conn, namespace_id, node, sql, pool, ids)


async def _matching(
    conn: AsyncConnection,
    namespace_id: int,
    node: Any,
    sql: SqlFilter,
    pool: CpuPool | None,
    ids: list[str] | None = None,
) -> list[tuple[str, PointId]]:
    """`matching_ids` once the filter's SQL is made (and where its work goes decided)."""
    where = sql.where if ids is None else sa.and_(among(points.c.point_id, ids), sql.where)
    with offload.rendering_in(pool):
        if sql.recheck is None:
            return await repository.select_ids(conn, namespace_id, where)
        found = await repository.select_ids_rechecked(conn, namespace_id, where, sql.recheck)
    return await offload.run_in(pool, _confirmed, node, found)


def _confirmed(node: Any, found: list[Any]) -> list[tuple[str, PointId]]:
    """The rows SQL matched, less those the predicate refuses (rows carrying a payload are
    the ones SQL could not decide)."""
    predicate = compile_predicate(node)
    return [
        (row[0], row[1])
        for row in found
        if len(row) == 2 or predicate(Point(row[1], row[2], frozenset(row[3])))
    ]


async def filter_where(
    conn: AsyncConnection,
    namespace_id: int,
    node: Any,
    indexed: frozenset[str] = frozenset(),
    cpu: CpuPool | None = None,
) -> sa.ColumnElement[bool] | None:
    """An exact WHERE clause over `points` for `node` (None: no filter).

    Where SQL alone cannot decide (`recheck`), the clause becomes the list of ids the
    in-memory predicate confirmed. Run the statement it goes into inside
    `offload.rendering_in(offload_pool(node, cpu))`.
    """
    if node is None:
        return None
    pool = offload_pool(node, cpu)
    sql = await offload.run_in(pool, compiled, node, indexed)
    if sql.recheck is None:
        return sql.where
    found = await _matching(conn, namespace_id, node, sql, pool)
    return among(points.c.point_id, [text for text, _ in found])


class FilterGate:
    """A resumable session's filter.

    `allows` answers for segment rows from the set of matching ids read from PostgreSQL
    when the engine was opened; `admits` re-checks each point's stored payload when it is
    about to be returned, so a point whose payload stopped matching is never returned.
    """

    def __init__(self, node: Any = None, matching: set[PointId] | None = None) -> None:
        self.node = node
        self.matching = matching
        self._predicate = None if node is None else compile_predicate(node)

    @classmethod
    async def open(
        cls,
        conn: AsyncConnection,
        collection: Collection,
        namespace_id: int,
        spec: Any,
        cpu: CpuPool | None = None,
    ) -> FilterGate:
        node = await parse_filter_off_loop(spec.filter, spec.filter_language, cpu)
        if node is None:
            return no_gate
        found = await matching_ids(conn, namespace_id, node, cpu=cpu)
        return cls(node, {wire for _, wire in found})

    def allows(self, segment: Any, rows: np.ndarray) -> np.ndarray:
        if self.matching is None:
            return np.ones(len(rows), dtype=bool)
        ids = segment._ids
        return np.fromiter((ids[r] in self.matching for r in rows.tolist()), bool, len(rows))

    def admits(self, point: repository.PointRecord, vector_names: frozenset[str]) -> bool:
        if self._predicate is None:
            return True
        return self._predicate(Point(point.id, point.payload, vector_names))

    def expected(self, segment: Any) -> int | None:
        """The planner's estimate of matching live points (None: every live point)."""
        return None if self.matching is None else len(self.matching)


no_gate = FilterGate()
