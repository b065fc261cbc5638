"""The services' one door to the filter package: parse, compile to SQL, re-check in Python."""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import repository
from app.errors import BadRequest
from app.models import Collection, PointId


def compile_filter_sql(node: Any) -> sa.ColumnElement[bool]:
    """A WHERE clause over `points` for a filter AST."""
    from app.filters import compile_sql

    return compile_sql(node)


def parse_filter(raw: Any, language: str) -> Any:
    """The filter AST of a filter as sent (Qdrant JSON or an Upstash string); None if empty."""
    if not raw:
        return None
    try:
        from app.filters import parse_qdrant_filter, parse_upstash_filter
    except ImportError:
        raise BadRequest("Filters are not supported by this server yet") from None

    return parse_upstash_filter(raw) if language == "upstash" else parse_qdrant_filter(raw)


class FilterGate:
    """A resumable session's filter.

    `allows` answers for segment rows from the set of matching ids read from PostgreSQL
    when the engine was opened; `admits` re-checks each point's stored payload when it is
    about to be returned, so a point whose payload stopped matching is never returned.
    """

    def __init__(self, node: Any = None, matching: set[PointId] | None = None) -> None:
        self.node = node
        self.matching = matching
        self._predicate = None
        if node is not None:
            from app.filters import compile_predicate

            self._predicate = compile_predicate(node)

    @classmethod
    async def open(
        cls, conn: AsyncConnection, collection: Collection, namespace_id: int, spec: Any
    ) -> FilterGate:
        node = parse_filter(spec.filter, spec.filter_language)
        if node is None:
            return no_gate
        found = await repository.select_ids(conn, namespace_id, compile_filter_sql(node))
        return cls(node, {wire for _, wire in found})

    def allows(self, segment: Any, rows: np.ndarray) -> np.ndarray:
        if self.matching is None:
            return np.ones(len(rows), dtype=bool)
        ids = segment._ids
        return np.fromiter((ids[r] in self.matching for r in rows.tolist()), bool, len(rows))

    def admits(self, point: repository.PointRecord) -> bool:
        if self._predicate is None:
            return True
        from app.filters import PointView

        return self._predicate(PointView(point.id, point.payload, set(point.vectors)))

    def expected(self, segment: Any) -> int | None:
        """The planner's estimate of matching live points (None: every live point)."""
        return None if self.matching is None else len(self.matching)


no_gate = FilterGate()
