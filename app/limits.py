"""Explicit limits on what one request may ask for.

Each is the honest answer to an input that would otherwise cost a worker unbounded time or
memory, or fail deep inside PostgreSQL or Python (a RecursionError, an index row too large):
past a limit the request gets a 400 that names the limit. The values are set once at start-up
from `Settings` (`configure`), and read wherever a request is parsed (`current()`), so the
parsers need no settings object threaded through them.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import BadRequest


@dataclass(frozen=True, slots=True)
class Limits:
    filter_depth: int = 32  # clauses nested in clauses (Qdrant) or parentheses (Upstash)
    filter_conditions: int = 1024  # conditions in one filter
    payload_depth: int = 64  # objects and arrays nested in a payload or metadata value
    name_bytes: int = 255  # collection, alias, namespace and payload-field names
    id_bytes: int = 1024  # a string point id (Upstash ids)
    result_points: int = 10_000  # points one page of a search, scroll or query may return
    sparse_values: int = 65_536  # non-zero entries of one sparse vector


_active = Limits()


def configure(limits: Limits) -> None:
    global _active
    _active = limits


def current() -> Limits:
    return _active


def check_name(what: str, name: str) -> None:
    """A 400 unless `name` fits a PostgreSQL index row with room to spare."""
    if len(name.encode()) > _active.name_bytes:
        raise BadRequest(
            f"Wrong input: {what} is longer than {_active.name_bytes} bytes "
            f"(WAYPOINT_MAX_NAME_BYTES)"
        )


def check_id(point_id: str) -> None:
    if len(point_id.encode()) > _active.id_bytes:
        raise BadRequest(
            f"Wrong input: a point id is longer than {_active.id_bytes} bytes "
            "(WAYPOINT_MAX_ID_BYTES)"
        )


def check_result_size(what: str, count: int) -> None:
    if count > _active.result_points:
        raise BadRequest(
            f"Wrong input: {what} {count} is above the limit of {_active.result_points} "
            "points per request (WAYPOINT_MAX_RESULT_POINTS); page through larger results"
        )


def check_sparse_size(count: int) -> None:
    if count > _active.sparse_values:
        raise BadRequest(
            f"Wrong input: a sparse vector has {count} entries, more than "
            f"{_active.sparse_values} (WAYPOINT_MAX_SPARSE_VALUES)"
        )


def json_depth(value: object) -> int:
    """How deeply objects and arrays nest in a decoded JSON value (0 for a scalar), counted
    level by level without recursion, so that no nesting can overflow the stack, and only
    up to one level past the limit."""
    depth = 0
    level = [value] if isinstance(value, dict | list) else []
    while level and depth <= _active.payload_depth:
        depth += 1
        inner: list[object] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            inner.extend(child for child in children if isinstance(child, dict | list))
        level = inner
    return depth


def check_payload(what: str, value: object) -> None:
    if json_depth(value) > _active.payload_depth:
        raise BadRequest(
            f"Wrong input: {what} nests objects and arrays more than {_active.payload_depth} "
            "levels deep (WAYPOINT_MAX_PAYLOAD_DEPTH)"
        )
