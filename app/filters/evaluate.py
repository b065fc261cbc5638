"""The reference evaluator: what a filter means, written to be read rather than to be fast.

`matches` walks the AST for one point. The other back ends (`predicate`, `sql`) are checked
against it, and it is checked against qdrant-client local mode for the Qdrant dialect, so it
follows local mode's rules one for one (see `semantics`) and the Upstash docs for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from app.filters import semantics as sem
from app.filters.ast import (
    And,
    AnyOf,
    Contains,
    DatetimeRange,
    Differs,
    Equals,
    Except,
    Exists,
    GeoBoundingBox,
    GeoPolygon,
    GeoRadius,
    Glob,
    HasId,
    HasVector,
    IsEmpty,
    IsNull,
    MinShould,
    Nested,
    Node,
    Not,
    Or,
    PointId,
    Prefix,
    Range,
    Substring,
    Text,
    Typing,
    ValuesCount,
    ValueTest,
)


@dataclass(frozen=True, slots=True)
class Point:
    """What a filter can see of a point: its wire id, its payload and its vectors' names."""

    id: PointId | None
    payload: dict[str, Any] | None = None
    vector_names: Collection[str] = field(default_factory=frozenset)


def matches(node: Node, point: Point) -> bool:
    """Whether `point` passes the filter `node`."""
    payload = point.payload or {}
    match node:
        case And(children):
            return all(matches(child, point) for child in children)
        case Or(children):
            return any(matches(child, point) for child in children)
        case Not(child):
            return not matches(child, point)
        case MinShould(children, min_count):
            return sum(matches(child, point) for child in children) >= min_count
        case HasId(ids):
            return point.id in ids
        case HasVector(name):
            return name in point.vector_names
        case Nested(path, sub_filter):
            # An element is not a point: it has no id and no vectors.
            return any(
                matches(sub_filter, Point(None, element))
                for element in _elements(payload, path.steps)
            )
        case Exists(path):
            return bool(sem.raw_values(payload, path.steps))
        case ValuesCount(path, gt, gte, lt, lte):
            return any(
                sem.in_bounds(count, gt, gte, lt, lte) for count in _counts(payload, path.steps)
            )
        case IsEmpty(path):
            values = sem.raw_values(payload, path.steps)
            return all(value is None or value == [] for value in values)
        case IsNull(path):
            values = sem.raw_values(payload, path.steps)
            return any(
                value is None or (isinstance(value, list) and None in value) for value in values
            )
        case _:
            return any(passes(node, value) for value in sem.tested_values(payload, node.path))


def _elements(payload: dict[str, Any], steps: tuple) -> list[dict[str, Any]]:
    """The object elements of the arrays at a nested condition's key."""
    arrays = [value for value in sem.raw_values(payload, steps) if isinstance(value, list)]
    return [element for array in arrays for element in array if isinstance(element, dict)]


def _counts(payload: dict[str, Any], steps: tuple) -> list[int]:
    """`values_count` per value; a key with no non-null value counts as 0."""
    values = sem.raw_values(payload, steps)
    if all(value is None for value in values):
        return [0]
    return [sem.value_count(value) for value in values]


def passes(test: ValueTest, value: Any) -> bool:
    """Whether one value found at a leaf's path passes the leaf's test."""
    match test:
        case Equals(_, literal, Typing.STRICT):
            return sem.strict_equal(value, literal)
        case Equals(_, literal, Typing.LOOSE):
            return sem.loose_equal(value, literal)
        case AnyOf(_, literals, Typing.STRICT):
            return any(sem.strict_equal(value, literal) for literal in literals)
        case AnyOf(_, literals, Typing.LOOSE):
            return any(sem.loose_equal(value, literal) for literal in literals)
        case Except(_, literals):
            return value is not None and not any(sem.strict_equal(value, lit) for lit in literals)
        case Differs(_, literal):
            return sem.loose_comparable(value, literal) and not sem.loose_equal(value, literal)
        case Range(_, gt, gte, lt, lte):
            return sem.is_number(value) and sem.in_bounds(value, gt, gte, lt, lte)
        case DatetimeRange(_, gt, gte, lt, lte):
            moment = sem.parse_datetime(value) if isinstance(value, str) else None
            return moment is not None and sem.in_bounds(moment, gt, gte, lt, lte)
        case Text(_, query, mode):
            if not isinstance(value, str):
                return False
            return sem.text_matches(value, sem.text_tokens(query), mode.value)
        case Prefix(_, prefix):
            return isinstance(value, str) and value.startswith(prefix)
        case Substring(_, substring):
            return isinstance(value, str) and substring in value
        case Glob(_, pattern, negated):
            if not isinstance(value, str):
                return False
            found = re.fullmatch(sem.glob_to_regex(pattern), value, re.DOTALL) is not None
            return found != negated
        case Contains(_, literal, negated):
            if not isinstance(value, list):
                return False
            return any(sem.loose_equal(element, literal) for element in value) != negated
        case GeoBoundingBox(_, top_left, bottom_right):
            point = sem.geo_coordinates(value)
            return point is not None and sem.in_box(*point, top_left, bottom_right)
        case GeoRadius(_, center, radius):
            point = sem.geo_coordinates(value)
            return point is not None and sem.geo_distance(*point, center) < radius
        case GeoPolygon(_, exterior, interiors):
            point = sem.geo_coordinates(value)
            holes = [sem.closed_ring(ring) for ring in interiors]
            return point is not None and sem.in_polygon(*point, sem.closed_ring(exterior), holes)
    raise TypeError(f"not a filter node: {test!r}")
