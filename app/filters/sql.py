"""The SQL compiler: a filter becomes a WHERE clause over `points` (PostgreSQL 16).

Values are bound as parameters; key names only ever reach SQL as bound parameters too (`->`
operands, or inside a bound jsonpath where they are written as escaped jsonpath strings).

**How a path finds values.** A path without `[]` is a chain of `->` (`payload -> 'a' -> 0`),
which yields SQL NULL when the path leads nowhere and is what an expression index is built on.
A path with `[]` is a `strict` jsonpath whose every step is guarded (`? (exists(@."a"))."a"`,
`? (@.type() == "array")[*]`), so a missing key or a wrong type drops that branch instead of
raising, as local mode's `value_by_key` does; `jsonb_path_query` then lists the values and an
`EXISTS` tests them. Qdrant's final-array flattening is a second `EXISTS` over
`jsonb_array_elements`. Every cast sits under a `CASE` on `jsonb_typeof`, because SQL does not
promise to evaluate `AND` left to right.

**Indexes.** Equality conditions (`match.value`, `match.any`, Upstash `=`, `IN`, `CONTAINS`)
also get a containment conjunct, e.g. `payload @> '{"city": "Paris"}' OR payload @> '{"city":
["Paris"]}'`: implied by the exact test, so harmless, and served by a GIN index on `payload`
with either `jsonb_path_ops` or `jsonb_ops`. The `->` chains can be served by expression
indexes on the same chain. Ranges, text, datetimes and geo are checked per row.

**Null logic.** A leaf is NULL where it does not hold (e.g. a NULL payload); `AND`/`OR` treat
that as false already, and `NOT` is written `x IS NOT TRUE` so that NULL negates to true.

**Exactness and recheck.** A few rules cannot be stated exactly in SQL, so those leaves compile
to a pair of bounds, rows where they surely hold and rows where they may hold:

- full text (`text`, `text_any`, `phrase`) is exact on ASCII strings; Python's Unicode
  tokenising and lowercasing differ from PostgreSQL's, so other strings are "maybe";
- datetime ranges are exact on RFC 3339-like strings (`YYYY-MM-DD`, `T`/`t`/space, optional
  `:SS` and fraction, `Z`/`z`/` UTC`/`±HH[[:]MM]`); local mode's rarer spellings are "maybe";
- geo radius and polygon use float arithmetic that PostgreSQL rejects on underflow or
  overflow, so coordinates outside 1e-100 <= |x| <= 1e100 (other than 0) are "maybe".

`compile_sql` returns `SqlFilter(where, recheck)`: `where` selects every matching row (and, when
`recheck` is set, possibly a few more); rows for which `recheck` is true must be confirmed with
`compile_predicate`. `recheck` is None when the filter is exact, which is the common case.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, JSONPATH
from sqlalchemy.sql.elements import ColumnElement

from app.db.functions import DATETIME, WIDE_OPEN, among, constant_chain_sql, sql_string
from app.db.tables import point_vectors, points
from app.filters import semantics as sem
from app.filters.ast import (
    And,
    AnyOf,
    Contains,
    DatetimeRange,
    Differs,
    Each,
    Equals,
    Except,
    Exists,
    GeoBoundingBox,
    GeoPoint,
    GeoPolygon,
    GeoRadius,
    Glob,
    HasId,
    HasVector,
    Index,
    IsEmpty,
    IsNull,
    Key,
    MinShould,
    Nested,
    Node,
    Not,
    Or,
    Path,
    Prefix,
    Range,
    Scalar,
    Step,
    Substring,
    Text,
    TextMode,
    Typing,
    ValuesCount,
    ValueTest,
)

Bool = ColumnElement[bool]
Json = ColumnElement[Any]
Pred = Callable[[Json], Bool]

_MAX_INDEX = 2**31 - 1  # a jsonb array holds far fewer elements; larger indexes find nothing
_MAX_HINTS = 16  # containment alternatives per condition before the hint stops paying off
_FLOAT_MAX = Decimal("1.7976931348623157e308")


@dataclass(frozen=True, slots=True)
class SqlFilter:
    """`where` for the query; rows where `recheck` is true need `compile_predicate` too."""

    where: Bool
    recheck: Bool | None = None


def compile_sql(
    node: Node,
    points: sa.Table = points,
    vectors: sa.Table = point_vectors,
    indexed: frozenset[str] = frozenset(),
) -> SqlFilter:
    """A WHERE clause over `points` (correlated to `vectors` for `has_vector`).

    `indexed`: declared fields whose expression indexes the clause should be able to use
    (the implied tests that serve them cost time per row where no index serves them)."""
    compiler = _Compiler(points, vectors, points.c.payload, nested=False, indexed=indexed)
    bounds = compiler.compile(node)
    if bounds.maybe is None:
        return SqlFilter(bounds.sure)
    return SqlFilter(bounds.maybe, bounds.sure.is_not(sa.true()))


@dataclass(frozen=True, slots=True)
class _Bounds:
    """Rows where a node surely holds, and (if SQL cannot be exact) rows where it may hold."""

    sure: Bool
    maybe: Bool | None = None

    @property
    def upper(self) -> Bool:
        return self.sure if self.maybe is None else self.maybe


# --- JSON helpers ------------------------------------------------------------------------------


def _typeof(value: Json) -> ColumnElement[str]:
    return sa.func.jsonb_typeof(value)


def _is(value: Json, kind: str) -> Bool:
    return _typeof(value) == sa.literal_column(f"'{kind}'")  # a fixed type name, not user text


def _jsonb(obj: Any) -> Json:
    return sa.cast(sa.literal(json.dumps(obj), sa.Text), JSONB)


def _string(value: Json) -> ColumnElement[str]:
    """The text of a JSON string, NULL for anything else."""
    text = value.op("#>>", return_type=sa.Text)(sa.literal_column("'{}'::text[]"))
    return sa.case((_is(value, "string"), text), else_=sa.null())


def _number(value: Json) -> ColumnElement[Decimal]:
    """A JSON number as numeric, NULL for anything else (booleans included)."""
    return sa.case((_is(value, "number"), sa.cast(value, sa.Numeric)), else_=sa.null())


def _loose_number(value: Json) -> ColumnElement[Decimal]:
    """Upstash equality's number: JSON numbers, and booleans as 1 and 0."""
    return sa.case(
        (_is(value, "number"), sa.cast(value, sa.Numeric)),
        (value == _jsonb(True), sa.literal(Decimal(1))),
        (value == _jsonb(False), sa.literal(Decimal(0))),
        else_=sa.null(),
    )


def _float(value: Json) -> ColumnElement[float]:
    """A JSON number as float8, NULL for anything else or a number float8 cannot hold."""
    fits = sa.case(
        (sa.func.abs(sa.cast(value, sa.Numeric)) <= _FLOAT_MAX, sa.cast(value, sa.Float)),
        else_=sa.null(),
    )
    return sa.case((_is(value, "number"), fits), else_=sa.null())


def _decimal(number: int | float | bool) -> ColumnElement[Decimal]:
    """A literal number as numeric; floats by their shortest repr, as json.dumps stores them."""
    exact = Decimal(int(number)) if isinstance(number, bool | int) else Decimal(repr(number))
    return sa.literal(exact, sa.Numeric)


def _count_true(conditions: Sequence[Bool]) -> ColumnElement[int]:
    terms = [sa.case((condition, 1), else_=0) for condition in conditions]
    total: ColumnElement[int] = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _not(condition: Bool) -> Bool:
    return condition.is_not(sa.true())


# --- key paths ---------------------------------------------------------------------------------


class _Values:
    """The values a path finds in a JSON document, as SQL tests over them."""

    def __init__(self, doc: Json, path: Path) -> None:
        self.doc = doc
        self.path = path
        self.chained = not any(isinstance(step, Each) for step in path.steps)

    def raw_any(self, pred: Pred) -> Bool:
        """Some value at the path (arrays whole) satisfies `pred`."""
        if self.chained:
            value = self._chain()
            return sa.and_(value.is_not(None), pred(value))
        return _exists_in("jsonb_path_query", self.doc, _jsonpath(self.path.steps), pred=pred)

    def element_any(self, pred: Pred) -> Bool:
        """Some element of an array value at the path satisfies `pred`."""
        if self.chained:
            value = self._chain()
            array = sa.case((_is(value, "array"), value), else_=sa.null())
            return _exists_in("jsonb_array_elements", array, pred=pred)
        elements = _jsonpath(self.path.steps, ' ? (@.type() == "array")[*]')
        return _exists_in("jsonb_path_query", self.doc, elements, pred=pred)

    def any(self, pred: Pred) -> Bool:
        """Some value a value test looks at (see `Path.flatten`) satisfies `pred`."""
        if not self.path.flatten:
            return self.raw_any(pred)
        scalar = self.raw_any(lambda value: sa.and_(_typeof(value) != "array", pred(value)))
        return sa.or_(scalar, self.element_any(pred))

    def _chain(self) -> Json:
        value = self.doc
        for step in self.path.steps:
            match step:
                case Key(name):
                    value = _member(value, sa.literal(name, sa.Text))
                case Index(position):
                    # `'"x"'::jsonb -> 0` is "x": PostgreSQL indexes a scalar like a 1-array
                    clamped = max(-_MAX_INDEX, min(position, _MAX_INDEX))
                    element = _member(value, sa.literal(clamped, sa.Integer))
                    value = sa.case((_is(value, "array"), element), else_=sa.null())
        return value


def _member(value: Json, key: ColumnElement[Any]) -> Json:
    """`value -> key`: an object member for text, an array element for an integer, else NULL."""
    return value.op("->", return_type=JSONB)(key)


def _exists_in(function: str, *args: Any, pred: Pred) -> Bool:
    """EXISTS over the rows of a jsonb set-returning function (an anonymous column)."""
    rows = getattr(sa.func, function)(*args).table_valued(sa.column("value", JSONB))
    rows = rows.render_derived().alias()
    return sa.exists(sa.select(sa.literal(1)).select_from(rows).where(pred(rows.c.value)))


def _jsonpath(steps: tuple[Step, ...], suffix: str = "") -> ColumnElement[Any]:
    """A strict, guarded jsonpath for `steps` (see the module docstring), bound as a parameter."""
    text = "strict $"
    for step in steps:
        match step:
            case Key(name):
                quoted = json.dumps(name)
                text += f" ? (exists(@.{quoted})).{quoted}"
            case Index(position):
                at = str(min(position, _MAX_INDEX)) if position >= 0 else f"last - {-position - 1}"
                text += f" ? (exists(@[{at}]))[{at}]"
            case Each():
                text += ' ? (@.type() == "array")[*]'
    return sa.cast(sa.literal(text + suffix, sa.Text), JSONPATH)


def _containment(steps: tuple[Step, ...], leaf: Any) -> Any:
    """The JSON document that `payload @>` tests for a value at `steps`."""
    for step in reversed(steps):
        leaf = {step.name: leaf} if isinstance(step, Key) else [leaf]
    return leaf


# --- the compiler ------------------------------------------------------------------------------


class _Compiler:
    """Compiles nodes against one JSON document: the payload, or an element inside `nested`."""

    def __init__(
        self,
        points: sa.Table,
        vectors: sa.Table,
        doc: Json,
        *,
        nested: bool,
        indexed: frozenset[str] = frozenset(),
    ) -> None:
        self.points = points
        self.vectors = vectors
        self.doc = doc
        self.nested = nested
        self.indexed = indexed
        self.hinting = True  # false below NOT and min_should, where no index can serve

    def compile(self, node: Node) -> _Bounds:
        match node:
            case And(children):
                return self._junction(children, sa.and_, sa.true())
            case Or(children):
                return self._junction(children, sa.or_, sa.false())
            case Not(child):
                inner = self._unindexable(child)
                if inner.maybe is None:
                    return _Bounds(_not(inner.sure))
                return _Bounds(_not(inner.maybe), _not(inner.sure))
            case MinShould(children, min_count):
                return self._min_should(children, min_count)
            case HasId(ids):
                return _Bounds(self._has_id(ids))
            case HasVector(name):
                return _Bounds(self._has_vector(name))
            case Nested(path, sub_filter):
                return self._nested(path, sub_filter)
            case Exists(path):
                return _Bounds(_Values(self.doc, path).raw_any(lambda value: sa.true()))
            case ValuesCount() | IsEmpty() | IsNull():
                return _Bounds(self._structural(node))
            case _:
                return self._value_test(node)

    def _unindexable(self, node: Node) -> _Bounds:
        """A node no index can serve, being negated or counted: without the implied tests
        that serve indexes (see `_hint`), which would only cost time per row there (the
        datetime ones a regular expression each)."""
        hinting, self.hinting = self.hinting, False
        try:
            return self.compile(node)
        finally:
            self.hinting = hinting

    def _junction(
        self, children: tuple[Node, ...], join: Callable[..., Bool], empty: Bool
    ) -> _Bounds:
        if not children:
            return _Bounds(empty)
        parts = [self.compile(child) for child in children]
        sure = join(*(part.sure for part in parts))
        if all(part.maybe is None for part in parts):
            return _Bounds(sure)
        return _Bounds(sure, join(*(part.upper for part in parts)))

    def _min_should(self, children: tuple[Node, ...], min_count: int) -> _Bounds:
        if len(children) < min_count:
            return _Bounds(sa.false())
        parts = [self._unindexable(child) for child in children]
        sure = _count_true([part.sure for part in parts]) >= min_count
        if all(part.maybe is None for part in parts):
            return _Bounds(sure)
        return _Bounds(sure, _count_true([part.upper for part in parts]) >= min_count)

    def _has_id(self, ids: frozenset[int | str]) -> Bool:
        if self.nested:
            return sa.false()  # an array element is not a point
        numbers = sorted(str(i) for i in ids if isinstance(i, int))
        strings = sorted(i for i in ids if isinstance(i, str))
        c = self.points.c
        options = []
        if numbers:
            options.append(sa.and_(c.id_kind == 0, among(c.point_id, numbers)))
        if strings:
            options.append(sa.and_(c.id_kind != 0, among(c.point_id, strings)))
        return sa.or_(*options) if options else sa.false()

    def _has_vector(self, name: str) -> Bool:
        if self.nested:
            return sa.false()
        v, c = self.vectors.c, self.points.c
        return sa.exists().where(
            v.namespace_id == c.namespace_id, v.point_id == c.point_id, v.name == name
        )

    def _nested(self, path: Path, sub_filter: Node) -> _Bounds:
        values = _Values(self.doc, path)

        def on_objects(bound: Callable[[_Bounds], Bool]) -> Pred:
            def pred(element: Json) -> Bool:
                inner = _Compiler(self.points, self.vectors, element, nested=True)
                return sa.and_(_is(element, "object"), bound(inner.compile(sub_filter)))

            return pred

        sure = values.element_any(on_objects(lambda bounds: bounds.sure))
        if _is_exact(sub_filter):
            return _Bounds(sure)
        return _Bounds(sure, values.element_any(on_objects(lambda bounds: bounds.upper)))

    def _structural(self, node: ValuesCount | IsEmpty | IsNull) -> Bool:
        values = _Values(self.doc, node.path)
        match node:
            case ValuesCount(_, gt, gte, lt, lte):
                fits = _count_fits(gt, gte, lt, lte)
                some = values.raw_any(lambda value: fits(_value_count(value)))
                if not sem.in_bounds(0, gt, gte, lt, lte):
                    return some
                no_value = _not(values.raw_any(lambda value: _typeof(value) != "null"))
                return sa.or_(some, no_value)
            case IsEmpty():
                return _not(values.raw_any(_non_empty))
            case IsNull():
                return values.raw_any(_null_or_holds_null)
        raise TypeError(f"not a structural condition: {node!r}")

    def _value_test(self, node: ValueTest) -> _Bounds:
        values = _Values(self.doc, node.path)
        sure_pred, maybe_pred = _value_preds(node)
        sure = values.any(sure_pred)
        hint = _hint(self.doc, node, self.indexed) if self.hinting and not self.nested else None
        if hint is not None:
            sure = sa.and_(hint, sure)
        if maybe_pred is None:
            return _Bounds(sure)
        maybe = values.any(maybe_pred)
        return _Bounds(sure, maybe if hint is None else sa.and_(hint, maybe))


def _is_exact(node: Node) -> bool:
    """Whether SQL states `node` exactly (no leaf needs a recheck)."""
    match node:
        case And(children) | Or(children) | MinShould(children, _):
            return all(_is_exact(child) for child in children)
        case Not(child):
            return _is_exact(child)
        case Nested(_, sub_filter):
            return _is_exact(sub_filter)
        case Text() | DatetimeRange() | GeoRadius() | GeoPolygon():
            return False
    return True


def _value_count(value: Json) -> ColumnElement[int]:
    return sa.case(
        (_is(value, "array"), sa.func.jsonb_array_length(value)),
        (_is(value, "null"), 0),
        else_=1,
    )


def _count_fits(gt: int | None, gte: int | None, lt: int | None, lte: int | None) -> Pred:
    def fits(count: ColumnElement[int]) -> Bool:
        checks = [
            count > gt if gt is not None else None,
            count >= gte if gte is not None else None,
            count < lt if lt is not None else None,
            count <= lte if lte is not None else None,
        ]
        present = [check for check in checks if check is not None]
        return sa.and_(*present) if present else sa.true()

    return fits


def _non_empty(value: Json) -> Bool:
    return sa.and_(_typeof(value) != "null", value != _jsonb([]))


def _null_or_holds_null(value: Json) -> Bool:
    return sa.or_(_is(value, "null"), sa.and_(_is(value, "array"), value.op("@>")(_jsonb([None]))))


# --- value tests -------------------------------------------------------------------------------


def _value_preds(node: ValueTest) -> tuple[Pred, Pred | None]:
    """(surely passes, may pass) for one value; the second is None when the first is exact."""
    match node:
        case Text(_, query, mode):
            return _text_preds(sem.text_tokens(query), mode)
        case DatetimeRange():
            return _datetime_preds(node)
        case GeoRadius() | GeoPolygon():
            return _geo_preds(node)
    return _exact_pred(node), None


def _exact_pred(node: ValueTest) -> Pred:
    match node:
        case Equals(_, literal, Typing.STRICT):
            return lambda value: _strict_in(value, (literal,))
        case AnyOf(_, literals, Typing.STRICT):
            return lambda value: _strict_in(value, literals)
        case Equals(_, literal, Typing.LOOSE):
            return lambda value: _loose_in(value, (literal,))
        case AnyOf(_, literals, Typing.LOOSE):
            return lambda value: _loose_in(value, literals)
        case Except(_, literals):
            return lambda v: sa.and_(_typeof(v) != "null", _not(_strict_in(v, literals)))
        case Differs(_, literal):
            return lambda value: _differs(value, literal)
        case Range(_, gt, gte, lt, lte):
            return lambda value: _in_range(_number(value), gt, gte, lt, lte)
        case Prefix(_, prefix):
            return lambda value: sa.func.starts_with(_string(value), prefix)
        case Substring(_, substring):
            return lambda value: sa.func.strpos(_string(value), substring) > 0
        case Glob(_, pattern, negated):
            regex = f"^(?:{sem.glob_to_regex(pattern)})$"
            operator = "!~" if negated else "~"
            return lambda value: _string(value).op(operator, return_type=sa.Boolean)(regex)
        case Contains(_, literal, negated):
            return lambda value: _contains(value, literal, negated)
        case GeoBoundingBox(_, top_left, bottom_right):
            return lambda value: _in_box(value, top_left, bottom_right)
    raise TypeError(f"not an exact value test: {node!r}")


def _strict_in(value: Json, literals: Sequence[Scalar]) -> Bool:
    """Qdrant equality with any literal: same JSON type, and integers are not floats."""
    strings = [v for v in literals if isinstance(v, str)]
    integers = [Decimal(v) for v in literals if sem.is_integer(v)]
    booleans = [v for v in literals if isinstance(v, bool)]
    options: list[Bool] = []
    if strings:
        options.append(among(_string(value), strings, sa.Text))
    if integers:
        number = _number(value)
        options.append(sa.and_(among(number, integers, sa.Numeric), sa.func.scale(number) == 0))
    options.extend(value == _jsonb(b) for b in booleans)
    return sa.or_(*options) if options else sa.false()


def _loose_in(value: Json, literals: Sequence[Scalar]) -> Bool:
    """Upstash equality with any literal: numbers by value, booleans as 1 and 0."""
    strings = [v for v in literals if isinstance(v, str)]
    numbers = [_decimal_value(v) for v in literals if not isinstance(v, str)]
    options: list[Bool] = []
    if strings:
        options.append(among(_string(value), strings, sa.Text))
    if numbers:
        options.append(among(_loose_number(value), numbers, sa.Numeric))
    return sa.or_(*options) if options else sa.false()


def _decimal_value(number: int | float | bool) -> Decimal:
    return Decimal(int(number)) if isinstance(number, bool | int) else Decimal(repr(number))


def _differs(value: Json, literal: Scalar) -> Bool:
    if isinstance(literal, str):
        return _string(value) != literal
    return _loose_number(value) != _decimal(literal)


def _in_range(number: ColumnElement[Decimal], gt: Any, gte: Any, lt: Any, lte: Any) -> Bool:
    checks = [number.is_not(None)]
    if gt is not None:
        checks.append(number > _decimal(gt))
    if gte is not None:
        checks.append(number >= _decimal(gte))
    if lt is not None:
        checks.append(number < _decimal(lt))
    if lte is not None:
        checks.append(number <= _decimal(lte))
    return sa.and_(*checks)


def _contains(value: Json, literal: Scalar, negated: bool) -> Bool:
    array = sa.case((_is(value, "array"), value), else_=sa.null())
    found = _exists_in("jsonb_array_elements", array, pred=lambda e: _loose_in(e, (literal,)))
    return sa.and_(_is(value, "array"), ~found if negated else found)


def _hint(doc: Json, node: ValueTest, indexed: frozenset[str]) -> Bool | None:
    """A containment test implied by an equality test (served by the GIN index), or for a
    declared field an implied test on its expression indexes; None if neither applies."""
    declared = str(node.path) in indexed and not any(
        not isinstance(step, Key) for step in node.path.steps
    )
    if not declared and not isinstance(node, Equals | AnyOf | Contains):
        return None
    match node:
        case Equals(path, literal, typing):
            leaves = _hint_leaves(path, (literal,), typing)
        case AnyOf(path, literals, typing):
            leaves = _hint_leaves(path, literals, typing)
        case Contains(path, literal, False):
            leaves = [[leaf] for leaf in _hint_leaves(path, (literal,), Typing.LOOSE)]
        case Range(path, gt, gte, lt, lte):
            return _bounds_hint(doc, path, "num", _number_bound(gt, gte), _number_bound(lt, lte))
        case DatetimeRange(path, gt, gte, lt, lte):
            return _bounds_hint(doc, path, "ts", _epoch(gt, gte), _epoch(lt, lte))
        case Text(path, query, mode):
            return _text_hint(doc, path, sem.text_tokens(query), mode)
        case GeoBoundingBox() | GeoRadius() | GeoPolygon():
            return _geo_hint(doc, node)
        case _:
            return None
    if not leaves or len(leaves) > _MAX_HINTS:
        return None
    documents = [_containment(node.path.steps, leaf) for leaf in leaves]
    return sa.or_(*(doc.op("@>", return_type=sa.Boolean)(_jsonb(d)) for d in documents))


# Hints for the expression indexes of declared fields (app.db.functions): each is implied by
# the test it accompanies, and written with the path as constants, as index expressions are.


def _bounds_hint(doc: Json, path: Path, kind: str, lower: Any, upper: Any) -> Bool | None:
    """`waypoint_<kind>_min(value) <= upper AND waypoint_<kind>_max(value) >= lower`."""
    chain = _constant_chain(doc, path)
    if chain is None or (lower is None and upper is None):
        return None
    bounds = []
    if upper is not None:
        bounds.append(getattr(sa.func, f"waypoint_{kind}_min")(chain, type_=sa.Numeric) <= upper)
    if lower is not None:
        bounds.append(getattr(sa.func, f"waypoint_{kind}_max")(chain, type_=sa.Numeric) >= lower)
    return sa.and_(*bounds)


def _number_bound(strict: Any, inclusive: Any) -> ColumnElement[Decimal] | None:
    bound = strict if strict is not None else inclusive
    return None if bound is None else _decimal(bound)


def _epoch(strict: datetime | None, inclusive: datetime | None) -> ColumnElement[Any] | None:
    """A datetime bound as epoch seconds, exactly (microseconds), as waypoint_ts_* count."""
    moment = strict if strict is not None else inclusive
    if moment is None:
        return None
    since = sem.utc_naive(moment) - datetime(1970, 1, 1)
    seconds = Decimal(since.days * 86400 + since.seconds) + Decimal(since.microseconds) / 10**6
    return sa.literal(seconds, sa.Numeric)


def _text_hint(doc: Json, path: Path, tokens: list[str], mode: TextMode) -> Bool | None:
    """The document's ASCII words hold the query's words, or it has non-ASCII text (whose
    tokens SQL does not compute): see `waypoint_words`."""
    chain = _constant_chain(doc, path)
    ascii_words = [token for token in tokens if re.fullmatch("[a-z0-9]+", token)]
    if chain is None or not ascii_words:
        return None
    if mode is TextMode.ANY and len(ascii_words) < len(tokens):
        return None  # a non-ASCII query word alone may match
    words = sa.func.waypoint_words(chain, type_=ARRAY(sa.Text))
    wanted = sa.literal(ascii_words, ARRAY(sa.Text))
    found = words.overlap(wanted) if mode is TextMode.ANY else words.contains(wanted)
    return sa.or_(found, sa.func.waypoint_unicode(chain, type_=sa.Boolean))


def _geo_hint(doc: Json, node: GeoBoundingBox | GeoRadius | GeoPolygon) -> Bool | None:
    """The box of the value's geo points meets a box around the query's region."""
    chain = _constant_chain(doc, node.path)
    region = _region_box(node)
    if chain is None or region is None:
        return None
    (west, south), (east, north) = region
    box = sa.func.box(sa.func.point(west, south), sa.func.point(east, north))
    return sa.func.waypoint_geo_box(chain).op("&&", return_type=sa.Boolean)(box)


def _region_box(
    node: GeoBoundingBox | GeoRadius | GeoPolygon,
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """((west, south), (east, north)) holding every point the test can accept, or None."""
    match node:
        case GeoBoundingBox(_, top_left, bottom_right):
            wraps = top_left.lon > bottom_right.lon
            west, east = (-WIDE_OPEN, WIDE_OPEN) if wraps else (top_left.lon, bottom_right.lon)
            return (west, bottom_right.lat), (east, top_left.lat)
        case GeoPolygon(_, exterior, _):
            lats, lons = [p.lat for p in exterior], [p.lon for p in exterior]
            return (min(lons), min(lats)), (max(lons), max(lats))
        case GeoRadius(_, center, radius):
            return _radius_box(center, radius)
    return None


def _radius_box(
    center: GeoPoint, radius: float
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """A box around a spherical cap: latitude within r/R of the centre's, and longitude within
    asin(sin(r/R) / cos(lat)) unless the cap holds a pole or crosses the antimeridian."""
    if not (abs(center.lat) <= 90 and abs(center.lon) <= 180 and math.isfinite(radius)):
        return None
    angle = max(radius, 0.0) / sem.MEAN_EARTH_RADIUS
    slack = 1e-7  # degrees: far more than rounding, far less than a useful box
    dlat = math.degrees(angle) + slack
    south, north = center.lat - dlat, center.lat + dlat
    if angle >= math.pi / 2 or south <= -90 or north >= 90:
        return (-WIDE_OPEN, south), (WIDE_OPEN, north)
    dlon = math.degrees(math.asin(min(1.0, math.sin(angle) / math.cos(math.radians(center.lat)))))
    west, east = center.lon - dlon - slack, center.lon + dlon + slack
    if west <= -180 or east >= 180:
        return (-WIDE_OPEN, south), (WIDE_OPEN, north)
    return (west, south), (east, north)


def _constant_chain(doc: Json, path: Path) -> Json | None:
    keys = [step.name for step in path.steps if isinstance(step, Key)]
    if len(keys) != len(path.steps) or constant_chain_sql(keys) is None:
        return None  # the same test that decides whether an index can exist
    value = doc
    for key in keys:
        constant = sa.literal_column(sql_string(key), sa.Text)
        value = _member(value, constant)
    return value


def _hint_leaves(path: Path, literals: Sequence[Scalar], typing: Typing) -> list[Any]:
    """JSON values that contain every value the equality can match at the end of `path`."""
    leaves: list[Any] = []
    for literal in literals:
        leaves.append(literal)
        if typing is Typing.LOOSE and isinstance(literal, bool):
            leaves.append(int(literal))
        elif typing is Typing.LOOSE and not isinstance(literal, str) and literal in (0, 1):
            leaves.append(bool(literal))
    if path.flatten:
        leaves += [[leaf] for leaf in leaves]
    return leaves


# --- full text ---------------------------------------------------------------------------------

_BOUNDARY_BEFORE, _BOUNDARY_AFTER, _GAP = "(^|[^a-z0-9])", "([^a-z0-9]|$)", "[^a-z0-9]+"


def _text_preds(tokens: list[str], mode: TextMode) -> tuple[Pred, Pred]:
    """Exact on ASCII strings, where the word rule is `[a-z0-9]+` after lowercasing."""
    ascii_tokens = [t for t in tokens if t.isascii()]
    if mode is TextMode.ANY:
        patterns = [f"{_BOUNDARY_BEFORE}({'|'.join(ascii_tokens)}){_BOUNDARY_AFTER}"]
        possible = bool(ascii_tokens)
    elif mode is TextMode.ALL:
        patterns = [f"{_BOUNDARY_BEFORE}{t}{_BOUNDARY_AFTER}" for t in dict.fromkeys(tokens)]
        possible = bool(tokens) and len(ascii_tokens) == len(tokens)
    else:
        patterns = [f"{_BOUNDARY_BEFORE}{_GAP.join(tokens)}{_BOUNDARY_AFTER}"]
        possible = bool(tokens) and len(ascii_tokens) == len(tokens)

    def sure(value: Json) -> Bool:
        if not possible:
            return sa.false()
        text = _string(value)
        lowered = sa.func.lower(text)
        matched = [lowered.op("~", return_type=sa.Boolean)(pattern) for pattern in patterns]
        return sa.and_(_is_ascii(text), *matched)

    def maybe(value: Json) -> Bool:
        text = _string(value)
        return sa.or_(sure(value), sa.and_(text.is_not(None), _not(_is_ascii(text))))

    return sure, maybe


def _is_ascii(text: ColumnElement[str]) -> Bool:
    return sa.func.octet_length(text) == sa.func.char_length(text)


# --- datetimes ---------------------------------------------------------------------------------

_DATETIME = DATETIME


def _datetime_preds(node: DatetimeRange) -> tuple[Pred, Pred]:
    bounds = [
        (op, sem.utc_naive(moment))
        for op, moment in (("gt", node.gt), ("gte", node.gte), ("lt", node.lt), ("lte", node.lte))
        if moment is not None
    ]

    def sure(value: Json) -> Bool:
        parts = sa.func.waypoint_datetime_parts(_string(value), type_=ARRAY(sa.Text))
        groups = parts.column_valued()
        moment = _utc_timestamp(sa.type_coerce(groups, ARRAY(sa.Text)))
        checks = [_compare(moment, op, bound) for op, bound in bounds] or [moment.is_not(None)]
        return sa.select(sa.and_(*checks)).scalar_subquery()

    def maybe(value: Json) -> Bool:
        text = _string(value)
        odd = sa.and_(text.is_not(None), _not(text.op("~", return_type=sa.Boolean)(_DATETIME)))
        return sa.or_(sure(value), odd)

    return sure, maybe


def _utc_timestamp(m: ColumnElement[list[str]]) -> ColumnElement[Any]:
    """The UTC wall time a `_DATETIME` match stands for; NULL if no match or no such date."""

    def group(n: int, default: str) -> ColumnElement[str]:
        return sa.func.coalesce(m[n], default)

    wall = sa.func.concat(
        m[1], "-", m[2], "-", m[3], " ", group(4, "00"), ":", group(5, "00"), ":",
        group(6, "00"), ".", sa.func.left(group(7, "0"), 6),
    )  # fmt: skip
    minutes = sa.cast(m[10], sa.Integer) * 60 + sa.cast(group(11, "0"), sa.Integer)
    offset = sa.case((m[9] == "-", -minutes), (m[9] == "+", minutes), else_=0)
    valid = sa.and_(m.is_not(None), sa.func.pg_input_is_valid(wall, "timestamp"))
    shifted = sa.cast(wall, sa.DateTime) - sa.func.make_interval(0, 0, 0, 0, 0, offset)
    return sa.case((valid, shifted), else_=sa.null())


def _compare(left: ColumnElement[Any], op: str, right: Any) -> Bool:
    bound = sa.literal(right, sa.DateTime)
    return {"gt": left > bound, "gte": left >= bound, "lt": left < bound, "lte": left <= bound}[op]


# --- geo ---------------------------------------------------------------------------------------


def _coordinates(value: Json) -> tuple[ColumnElement[float], ColumnElement[float]]:
    lat = _member(value, sa.literal("lat", sa.Text))
    return _float(lat), _float(_member(value, sa.literal("lon", sa.Text)))


def _float_param(x: float) -> ColumnElement[float]:
    return sa.literal(float(x), sa.Float)


def _in_box(value: Json, top_left: GeoPoint, bottom_right: GeoPoint) -> Bool:
    lat, lon = _coordinates(value)
    left, right = _float_param(top_left.lon), _float_param(bottom_right.lon)
    if top_left.lon > bottom_right.lon:
        lon_ok = sa.or_(lon > left, lon < right)
    else:
        lon_ok = sa.and_(left < lon, lon < right)
    top, bottom = _float_param(top_left.lat), _float_param(bottom_right.lat)
    return sa.and_(lon_ok, top > lat, lat > bottom)


def _tame(x: float) -> bool:
    return x == 0 or 1e-100 <= abs(x) <= 1e100


def _tame_sql(x: ColumnElement[float]) -> Bool:
    """Coordinates float8 arithmetic handles without underflow or overflow errors."""
    magnitude = sa.func.abs(x)
    return sa.or_(magnitude == 0, sa.and_(magnitude >= 1e-100, magnitude <= 1e100))


def _geo_preds(node: GeoRadius | GeoPolygon) -> tuple[Pred, Pred]:
    """Exact for tame coordinates (see the module docstring); the rest is "maybe"."""
    corners = [node.center] if isinstance(node, GeoRadius) else _polygon_points(node)
    tame_filter = all(_tame(p.lat) and _tame(p.lon) for p in corners)
    inside: Callable[[Any, Any, Any], Bool] = (
        _within_radius if isinstance(node, GeoRadius) else _within_polygon
    )

    def sure(value: Json) -> Bool:
        if not tame_filter:
            return sa.false()
        lat, lon = _coordinates(value)
        tame = sa.and_(_tame_sql(lat), _tame_sql(lon))
        return sa.case((tame, inside(lat, lon, node)), else_=sa.false())

    def maybe(value: Json) -> Bool:
        lat, lon = _coordinates(value)
        is_point = sa.and_(lat.is_not(None), lon.is_not(None))
        if not tame_filter:
            return is_point
        untamed = _not(sa.and_(_tame_sql(lat), _tame_sql(lon)))
        return sa.or_(sure(value), sa.and_(is_point, untamed))

    return sure, maybe


def _polygon_points(node: GeoPolygon) -> list[GeoPoint]:
    return [point for ring in (node.exterior, *node.interiors) for point in ring]


def _within_radius(lat: ColumnElement[float], lon: ColumnElement[float], node: GeoRadius) -> Bool:
    """`semantics.geo_distance(...) < radius`, operation for operation."""
    degree = _float_param(math.pi / 180)
    lat1, lon1 = lat * degree, lon * degree
    lat2, lon2 = math.radians(node.center.lat), math.radians(node.center.lon)
    dlon = _float_param(lon2) - lon1
    dlat = _float_param(lat2) - lat1
    half = _float_param(2.0)
    a = sa.func.power(sa.func.sin(dlat / half), 2.0) + sa.func.cos(lat1) * _float_param(
        math.cos(lat2)
    ) * sa.func.power(sa.func.sin(dlon / half), 2.0)
    c = _float_param(2.0) * sa.func.asin(sa.func.least(sa.func.sqrt(a), _float_param(1.0)))
    return _float_param(sem.MEAN_EARTH_RADIUS) * c < _float_param(node.radius)


def _within_polygon(lat: ColumnElement[float], lon: ColumnElement[float], node: GeoPolygon) -> Bool:
    outer = _ring_sql(lat, lon, sem.closed_ring(node.exterior))
    conditions = [_not(outer.boundary), outer.odd]
    for hole in node.interiors:
        ring = _ring_sql(lat, lon, sem.closed_ring(hole))
        conditions += [_not(ring.boundary), _not(ring.odd)]
    return sa.and_(*conditions)


@dataclass(frozen=True, slots=True)
class _RingSql:
    boundary: Bool
    odd: Bool


def _ring_sql(
    lat: ColumnElement[float], lon: ColumnElement[float], ring: list[tuple[float, float]]
) -> _RingSql:
    """`semantics.ring_position`, unrolled over the ring's edges with the same arithmetic."""
    boundaries: list[Bool] = []
    crossings: list[Bool] = []
    for i in range(len(ring)):
        (xi, yi), (xj, yj) = ring[i], ring[i - 1]
        x_i, x_j, y_i, y_j = map(_float_param, (xi, xj, yi, yj))
        on_line = (lon * _float_param(xi - xj) + y_i * (x_j - lat)) + y_j * (lat - x_i) == 0
        between = sa.and_((x_i - lat) * (x_j - lat) <= 0, (y_i - lon) * (y_j - lon) <= 0)
        boundaries.append(sa.and_(on_line, between))
        if yi != yj:  # an edge with yi == yj never crosses; skipping it avoids dividing by 0
            ray = _float_param(xj - xi) * (lon - y_i) / _float_param(yj - yi) + x_i
            crossings.append(sa.and_((y_i > lon) != (y_j > lon), lat < ray))
    boundary = sa.or_(*boundaries) if boundaries else sa.false()
    odd = _count_true(crossings) % 2 == 1 if crossings else sa.false()
    return _RingSql(boundary, odd)
