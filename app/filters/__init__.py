"""Payload filters: one AST for the Qdrant and Upstash filter languages, three back ends.

- `parse_qdrant_filter(obj)` / `parse_upstash_filter(text)`: wire form → `Node` (None: no filter).
- `matches(node, point)`: the reference evaluator, written for clarity.
- `compile_predicate(node)` / `compile_mask(node, ids, payloads, vector_names)`: in memory.
- `compile_sql(node)`: a WHERE clause over `points` (`SqlFilter.recheck` says which rows, if
  any, must be confirmed with the predicate).
"""

from app.filters.ast import Node, filter_cost
from app.filters.evaluate import Point, matches
from app.filters.predicate import PointLike, compile_mask, compile_predicate
from app.filters.qdrant import parse_qdrant_filter
from app.filters.sql import SqlFilter, compile_sql
from app.filters.upstash import parse_upstash_filter

__all__ = [
    "Node",
    "Point",
    "PointLike",
    "SqlFilter",
    "compile_mask",
    "compile_predicate",
    "compile_sql",
    "filter_cost",
    "matches",
    "parse_qdrant_filter",
    "parse_upstash_filter",
]
