"""The in-memory compiler: a filter becomes nested closures, built once per filter.

`compile_predicate` is for checking points one by one (a graph search's filter callback);
`compile_mask` is for a batch (a brute-force scan's allow-mask). Both mean exactly what
`evaluate.matches` means; they only avoid looking at the AST again for every point.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

import numpy as np

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
    Key,
    MinShould,
    Nested,
    Node,
    Not,
    Or,
    Path,
    PointId,
    Prefix,
    Range,
    Scalar,
    Step,
    Substring,
    Text,
    Typing,
    ValuesCount,
    ValueTest,
)


class PointLike(Protocol):
    @property
    def id(self) -> PointId | None: ...
    @property
    def payload(self) -> dict[str, Any] | None: ...
    @property
    def vector_names(self) -> Collection[str]: ...


Check = Callable[[dict[str, Any], PointId | None, Collection[str]], bool]
"""A compiled node: (payload, point id, vector names) -> matches."""
Getter = Callable[[Any], list[Any]]
Test = Callable[[Any], bool]


def compile_predicate(node: Node) -> Callable[[PointLike], bool]:
    """A function telling whether a point passes `node`."""
    check = _compile(node)

    def predicate(point: PointLike) -> bool:
        return check(point.payload or {}, point.id, point.vector_names)

    return predicate


# --- boolean structure -------------------------------------------------------------------------


def _compile(node: Node) -> Check:
    match node:
        case And(children):
            return _all([_compile(child) for child in children])
        case Or(children):
            return _any([_compile(child) for child in children])
        case Not(child):
            inner = _compile(child)
            return lambda payload, id_, names: not inner(payload, id_, names)
        case MinShould(children, min_count):
            checks = [_compile(child) for child in children]
            return lambda p, i, n: sum(1 for check in checks if check(p, i, n)) >= min_count
        case HasId(ids):
            return lambda payload, id_, names: id_ in ids
        case HasVector(name):
            return lambda payload, id_, names: name in names
        case Nested() | Exists() | ValuesCount() | IsEmpty() | IsNull():
            return _compile_structural(node)
        case _:
            return _compile_value_test(node)


def _all(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    return lambda payload, id_, names: all(check(payload, id_, names) for check in checks)


def _any(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    return lambda payload, id_, names: any(check(payload, id_, names) for check in checks)


def _compile_structural(node: Nested | Exists | ValuesCount | IsEmpty | IsNull) -> Check:
    """Conditions on the raw values at a path, arrays kept whole."""
    raw = _getter(node.path.steps)
    match node:
        case Nested(_, sub_filter):
            inner = _compile(sub_filter)
            no_vectors: frozenset[str] = frozenset()

            def nested(payload: dict[str, Any], id_: Any, names: Any) -> bool:
                return any(
                    inner(element, None, no_vectors)
                    for array in raw(payload)
                    if isinstance(array, list)
                    for element in array
                    if isinstance(element, dict)
                )

            return nested
        case Exists():
            return lambda payload, id_, names: bool(raw(payload))
        case ValuesCount(_, gt, gte, lt, lte):

            def values_count(payload: dict[str, Any], id_: Any, names: Any) -> bool:
                values = raw(payload)
                counts = [0] if all(v is None for v in values) else map(sem.value_count, values)
                return any(sem.in_bounds(count, gt, gte, lt, lte) for count in counts)

            return values_count
        case IsEmpty():
            return lambda payload, id_, names: all(v is None or v == [] for v in raw(payload))
        case IsNull():
            return lambda payload, id_, names: any(
                v is None or (isinstance(v, list) and None in v) for v in raw(payload)
            )
    raise TypeError(f"not a structural condition: {node!r}")


def _compile_value_test(node: ValueTest) -> Check:
    values = _values_getter(node.path)
    test = _test(node)
    return lambda payload, id_, names: any(test(value) for value in values(payload))


# --- key paths ---------------------------------------------------------------------------------


def _getter(steps: tuple[Step, ...]) -> Getter:
    """payload -> raw values at `steps`; plain key chains get a loop without recursion."""
    if not all(isinstance(step, Key) for step in steps):
        return functools.partial(sem.raw_values, steps=steps)
    names = [step.name for step in steps if isinstance(step, Key)]

    def by_keys(payload: Any) -> list[Any]:
        for name in names:
            if not isinstance(payload, dict) or name not in payload:
                return []
            payload = payload[name]
        return [payload]

    return by_keys


def _values_getter(path: Path) -> Getter:
    raw = _getter(path.steps)
    if not path.flatten:
        return raw
    return lambda payload: sem.flattened(raw(payload))


# --- value tests -------------------------------------------------------------------------------


def _test(node: ValueTest) -> Test:
    match node:
        case Equals(_, literal, Typing.STRICT):
            return _strict_in((literal,))
        case AnyOf(_, literals, Typing.STRICT):
            return _strict_in(literals)
        case Equals(_, literal, Typing.LOOSE):
            return _loose_in((literal,))
        case AnyOf(_, literals, Typing.LOOSE):
            return _loose_in(literals)
        case Except(_, literals):
            listed = _strict_in(literals)
            return lambda value: value is not None and not listed(value)
        case Differs(_, literal):
            return lambda v: sem.loose_comparable(v, literal) and not sem.loose_equal(v, literal)
        case Range(_, gt, gte, lt, lte):
            return lambda v: sem.is_number(v) and sem.in_bounds(v, gt, gte, lt, lte)
        case DatetimeRange(_, gt, gte, lt, lte):
            return _datetime_test(node)
        case Text(_, query, mode):
            tokens, kind = sem.text_tokens(query), mode.value
            return lambda v: isinstance(v, str) and sem.text_matches(v, tokens, kind)
        case Prefix(_, prefix):
            return lambda value: isinstance(value, str) and value.startswith(prefix)
        case Substring(_, substring):
            return lambda value: isinstance(value, str) and substring in value
        case Glob(_, pattern, negated):
            regex = re.compile(sem.glob_to_regex(pattern), re.DOTALL)
            return lambda v: isinstance(v, str) and (regex.fullmatch(v) is None) == negated
        case Contains(_, literal, negated):
            member = _loose_in((literal,))
            return lambda v: isinstance(v, list) and any(map(member, v)) != negated
        case GeoBoundingBox() | GeoRadius() | GeoPolygon():
            return _geo_test(node)
    raise TypeError(f"not a value test: {node!r}")


def _strict_in(literals: Sequence[Scalar]) -> Test:
    """Qdrant equality with any of `literals`: exact types, so sets keyed by type work."""
    strings = {v for v in literals if isinstance(v, str)}
    integers = {v for v in literals if type(v) is int}
    booleans = [v for v in literals if isinstance(v, bool)]

    def test(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            return value in strings
        if kind is int:
            return value in integers
        return kind is bool and value in booleans

    return test


def _loose_in(literals: Sequence[Scalar]) -> Test:
    """Upstash equality with any of `literals`: numbers by value, booleans as 1 and 0."""
    strings = {v for v in literals if isinstance(v, str)}
    numbers = {sem.loose_number(v) for v in literals if not isinstance(v, str)}

    def test(value: Any) -> bool:
        if isinstance(value, str):
            return value in strings
        number = sem.loose_number(value)
        return number is not None and number in numbers

    return test


_parse_datetime = functools.lru_cache(maxsize=4096)(sem.parse_datetime)


def _datetime_test(node: DatetimeRange) -> Test:
    gt, gte, lt, lte = node.gt, node.gte, node.lt, node.lte

    def test(value: Any) -> bool:
        moment = _parse_datetime(value) if isinstance(value, str) else None
        return moment is not None and sem.in_bounds(moment, gt, gte, lt, lte)

    return test


def _geo_test(node: GeoBoundingBox | GeoRadius | GeoPolygon) -> Test:
    match node:
        case GeoBoundingBox(_, top_left, bottom_right):
            return _on_geo_point(lambda lat, lon: sem.in_box(lat, lon, top_left, bottom_right))
        case GeoRadius(_, center, radius):
            return _on_geo_point(lambda lat, lon: sem.geo_distance(lat, lon, center) < radius)
        case GeoPolygon(_, exterior, interiors):
            outer = sem.closed_ring(exterior)
            holes = [sem.closed_ring(ring) for ring in interiors]
            return _on_geo_point(lambda lat, lon: sem.in_polygon(lat, lon, outer, holes))


def _on_geo_point(inside: Callable[[float, float], bool]) -> Test:
    def test(value: Any) -> bool:
        point = sem.geo_coordinates(value)
        return point is not None and inside(*point)

    return test


# --- batches -----------------------------------------------------------------------------------

Mask = Callable[["_Batch", np.ndarray], np.ndarray]
"""A compiled node over a batch: (batch, row numbers) -> one bool per row number."""


class _Batch:
    def __init__(
        self,
        ids: Sequence[PointId] | np.ndarray,
        payloads: Sequence[dict[str, Any] | None],
        vector_names: Sequence[Collection[str]],
    ) -> None:
        self.ids = ids
        self.payloads = payloads
        self.vector_names = vector_names


def compile_mask(
    node: Node,
    ids: Sequence[PointId] | np.ndarray,
    payloads: Sequence[dict[str, Any] | None],
    vector_names: Sequence[Collection[str]],
) -> np.ndarray:
    """One bool per point of the batch: whether it passes `node`.

    Boolean structure is vectorised and short-circuits by rows (`And` evaluates each child
    only on the rows still alive, `Or` only on the rows not yet matched); `has_id` over an
    integer id array is `np.isin`; other leaves run their compiled check on the rows they see.
    """
    if not len(ids) == len(payloads) == len(vector_names):
        raise ValueError("ids, payloads and vector_names must have the same length")
    mask = _compile_mask(node)
    return mask(_Batch(ids, payloads, vector_names), np.arange(len(payloads)))


def _compile_mask(node: Node) -> Mask:
    match node:
        case And(children):
            return _mask_all([_compile_mask(child) for child in children])
        case Or(children):
            return _mask_any([_compile_mask(child) for child in children])
        case Not(child):
            inner = _compile_mask(child)
            return lambda batch, rows: ~inner(batch, rows)
        case MinShould(children, min_count):
            masks = [_compile_mask(child) for child in children]

            def at_least(batch: _Batch, rows: np.ndarray) -> np.ndarray:
                counts = np.zeros(len(rows), dtype=np.int64)
                for mask in masks:
                    counts += mask(batch, rows)
                return counts >= min_count

            return at_least
        case HasId(ids):
            return _mask_has_id(ids)
        case _:
            return _mask_rows(_compile(node))


def _mask_all(masks: list[Mask]) -> Mask:
    def all_of(batch: _Batch, rows: np.ndarray) -> np.ndarray:
        alive = np.arange(len(rows))
        for mask in masks:
            alive = alive[mask(batch, rows[alive])]
            if not len(alive):
                break
        result = np.zeros(len(rows), dtype=bool)
        result[alive] = True
        return result

    return all_of


def _mask_any(masks: list[Mask]) -> Mask:
    def any_of(batch: _Batch, rows: np.ndarray) -> np.ndarray:
        result = np.zeros(len(rows), dtype=bool)
        pending = np.arange(len(rows))
        for mask in masks:
            if not len(pending):
                break
            hit = mask(batch, rows[pending])
            result[pending[hit]] = True
            pending = pending[~hit]
        return result

    return any_of


def _mask_has_id(ids: frozenset[PointId]) -> Mask:
    numbers = [i for i in ids if isinstance(i, int)]
    fallback = _mask_rows(_compile(HasId(ids)))

    def has_id(batch: _Batch, rows: np.ndarray) -> np.ndarray:
        column = batch.ids
        if not (isinstance(column, np.ndarray) and column.dtype.kind in "iu"):
            return fallback(batch, rows)
        limits = np.iinfo(column.dtype)
        wanted = np.array([i for i in numbers if limits.min <= i <= limits.max], column.dtype)
        return np.isin(column[rows], wanted)

    return has_id


def _mask_rows(check: Check) -> Mask:
    def per_row(batch: _Batch, rows: np.ndarray) -> np.ndarray:
        ids, payloads, names = batch.ids, batch.payloads, batch.vector_names
        return np.fromiter(
            (check(payloads[r] or {}, ids[r], names[r]) for r in rows.tolist()),
            dtype=bool,
            count=len(rows),
        )

    return per_row
