"""Qdrant REST filter JSON → filter AST.

Accepts what qdrant-client 1.20 sends (`http/models/models.py`): `must` / `should` / `must_not`
as one condition or a list, `min_should`, nested filters, and every field condition. Shapes the
server would refuse are refused here, with the place in the filter that is wrong
(`filter.must[1].match`), so nothing odd reaches the back ends:

- a field condition has exactly one of `match`, `range`, `geo_*`, `values_count`, `is_empty`,
  `is_null` (local mode silently picks one; the server ORs them);
- `match.value` is a string, an integer or a boolean, `match.any` / `match.except` a list of
  strings or of integers; floats are refused, as the server does;
- `range` bounds are all numbers or all RFC 3339 strings (then a datetime range);
- geo coordinates are in [-90, 90] and [-180, 180] and polygon rings have at least 4 points with
  the last equal to the first;
- `slice` is not supported yet.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from app import limits
from app.errors import BadRequest, NulCharacter
from app.filters import ast
from app.filters.ast import (
    FALSE,
    TRUE,
    And,
    Each,
    Index,
    Key,
    Node,
    Not,
    Or,
    Path,
    Typing,
)
from app.filters.semantics import as_utc, is_integer, parse_datetime

_FILTER_KEYS = {"must", "should", "must_not", "min_should"}
_FIELD_TESTS = ("match", "range", "geo_bounding_box", "geo_radius", "geo_polygon")
_FIELD_CONDITIONS = (*_FIELD_TESTS, "values_count", "is_empty", "is_null")
_BOUNDS = ("gt", "gte", "lt", "lte")
_I64 = 2**63
_U64 = 2**64


def parse_qdrant_filter(obj: dict[str, Any] | None) -> Node | None:
    """The AST of a REST `filter`, or None when it constrains nothing."""
    if obj is None:
        return None
    _check_size(obj)
    if _holds_nul(obj):  # rejected whether it would be evaluated in memory or in SQL
        raise NulCharacter("the filter")
    node = _filter(obj, "filter")
    return None if node == TRUE else node


def _check_size(obj: Any) -> None:
    """Refuse a filter nested deeper or holding more conditions than the limits allow,
    before the recursive parser and back ends meet it; a walk without recursion that stops
    at the first excess, so its cost is bounded whatever was sent."""
    allowed = limits.current()
    conditions = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        filter_obj, depth = stack.pop()
        if depth > allowed.filter_depth:
            raise BadRequest(
                f"Wrong input: the filter nests clauses more than {allowed.filter_depth} "
                "levels deep (WAYPOINT_MAX_FILTER_DEPTH)"
            )
        for item in _clause_items(filter_obj):
            if isinstance(item, dict) and item and set(item) <= _FILTER_KEYS:
                stack.append((item, depth + 1))
                continue
            conditions += 1
            if conditions > allowed.filter_conditions:
                raise BadRequest(
                    f"Wrong input: the filter has more than {allowed.filter_conditions} "
                    "conditions (WAYPOINT_MAX_FILTER_CONDITIONS)"
                )
            nested = item.get("nested") if isinstance(item, dict) else None
            if isinstance(nested, dict):
                stack.append((nested.get("filter"), depth + 1))


def _clause_items(obj: Any) -> list[Any]:
    """The conditions and sub-filters directly inside a filter (none if it is malformed:
    the parser then says what is wrong)."""
    if not isinstance(obj, dict):
        return []
    min_should = obj.get("min_should")
    clauses = [obj.get("must"), obj.get("should"), obj.get("must_not")]
    clauses.append(min_should.get("conditions") if isinstance(min_should, dict) else None)
    items: list[Any] = []
    for clause in clauses:
        if isinstance(clause, list):
            items.extend(clause)
        elif clause is not None:
            items.append(clause)
    return items


def _holds_nul(obj: Any) -> bool:
    """Whether a key or string anywhere in a decoded JSON value contains U+0000."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _fail(where: str, problem: str) -> BadRequest:
    return BadRequest(f"Wrong input: {problem} at `{where}`")


# --- filters and conditions --------------------------------------------------------------------


def _filter(obj: Any, where: str) -> Node:
    if not isinstance(obj, dict):
        raise _fail(where, "a filter must be an object")
    unknown = set(obj) - _FILTER_KEYS
    if unknown:
        raise _fail(where, f"unknown filter clause `{sorted(unknown)[0]}`")
    parts: list[Node] = []
    if obj.get("must") is not None:
        parts.extend(_conditions(obj["must"], f"{where}.must"))
    if obj.get("must_not") is not None:
        parts.extend(Not(c) for c in _conditions(obj["must_not"], f"{where}.must_not"))
    if obj.get("should") is not None:
        should = _conditions(obj["should"], f"{where}.should")
        if should:  # an empty `should` is no constraint, not an impossible one
            parts.append(ast.either(should))
    if obj.get("min_should") is not None:
        parts.append(_min_should(obj["min_should"], f"{where}.min_should"))
    return _one(And, parts)


def _one(kind: type[And] | type[Or], children: list[Node]) -> Node:
    """`kind(children)`, without wrapping a single child."""
    return children[0] if len(children) == 1 else kind(tuple(children))


def _conditions(clause: Any, where: str) -> list[Node]:
    if isinstance(clause, list):
        return [_condition(c, f"{where}[{i}]") for i, c in enumerate(clause)]
    return [_condition(clause, where)]


def _min_should(obj: Any, where: str) -> Node:
    if not isinstance(obj, dict) or set(obj) != {"conditions", "min_count"}:
        raise _fail(where, "`min_should` must be {conditions: [...], min_count: n}")
    count = obj["min_count"]
    if not is_integer(count) or count < 1:
        raise _fail(f"{where}.min_count", f"min_count value {count!r} is invalid, must be >= 1")
    conditions = obj["conditions"]
    if not isinstance(conditions, list):
        raise _fail(f"{where}.conditions", "`conditions` must be a list")
    children = [_condition(c, f"{where}.conditions[{i}]") for i, c in enumerate(conditions)]
    return ast.MinShould(tuple(children), count) if len(children) >= count else FALSE


def _condition(obj: Any, where: str) -> Node:
    if not isinstance(obj, dict):
        raise _fail(where, "a condition must be an object")
    if "key" in obj:
        return _field_condition(obj, where)
    if len(obj) == 1:
        name, value = next(iter(obj.items()))
        parse = _SPECIAL_CONDITIONS.get(name)
        if parse is not None:
            return parse(value, f"{where}.{name}")
    if set(obj) <= _FILTER_KEYS:
        return _filter(obj, where)
    raise _fail(where, f"unknown condition with keys {sorted(obj)}")


def _is_empty(obj: Any, where: str) -> Node:
    return ast.IsEmpty(_key_only(obj, where))


def _is_null(obj: Any, where: str) -> Node:
    return ast.IsNull(_key_only(obj, where))


def _key_only(obj: Any, where: str) -> Path:
    if not isinstance(obj, dict) or set(obj) != {"key"}:
        raise _fail(where, "expected {key: ...}")
    return parse_key(obj["key"], f"{where}.key")


def _has_id(obj: Any, where: str) -> Node:
    if not isinstance(obj, list):
        raise _fail(where, "`has_id` must be a list of point ids")
    return ast.HasId(frozenset(_point_id(v, f"{where}[{i}]") for i, v in enumerate(obj)))


def _point_id(value: Any, where: str) -> int | str:
    if is_integer(value) and 0 <= value < _U64:
        return value
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise _fail(where, f"{value!r} is not a valid point id (an unsigned integer or a UUID)")


def _has_vector(obj: Any, where: str) -> Node:
    if not isinstance(obj, str):
        raise _fail(where, "`has_vector` must be a vector name")
    return ast.HasVector(obj)


def _nested(obj: Any, where: str) -> Node:
    if not isinstance(obj, dict) or set(obj) != {"key", "filter"}:
        raise _fail(where, "expected {key: ..., filter: {...}}")
    key = obj["key"]
    if isinstance(key, str) and len(key) > 2 and key.endswith("[]"):
        key = key[:-2]  # `data[]` and `data` name the same array
    return ast.Nested(parse_key(key, f"{where}.key"), _filter(obj["filter"], f"{where}.filter"))


def _slice(obj: Any, where: str) -> Node:
    raise _fail(where, "the `slice` condition is not supported")


_SPECIAL_CONDITIONS = {
    "is_empty": _is_empty,
    "is_null": _is_null,
    "has_id": _has_id,
    "has_vector": _has_vector,
    "nested": _nested,
    "slice": _slice,
}


# --- field conditions --------------------------------------------------------------------------


def _field_condition(obj: dict[str, Any], where: str) -> Node:
    unknown = set(obj) - {"key", *_FIELD_CONDITIONS}
    if unknown:
        raise _fail(where, f"unknown field condition `{sorted(unknown)[0]}`")
    present = [name for name in _FIELD_CONDITIONS if obj.get(name) is not None]
    if len(present) != 1:
        raise _fail(where, f"a field condition needs exactly one of {', '.join(_FIELD_CONDITIONS)}")
    path = parse_key(obj["key"], f"{where}.key")
    name = present[0]
    return _FIELD_PARSERS[name](path, obj[name], f"{where}.{name}")


def _match(path: Path, obj: Any, where: str) -> Node:
    if not isinstance(obj, dict) or len(obj) != 1:
        raise _fail(where, "`match` needs exactly one of value, any, except, text, ...")
    kind, value = next(iter(obj.items()))
    where = f"{where}.{kind}"
    if kind == "value":
        return ast.Equals(path, _match_value(value, where), Typing.STRICT)
    if kind == "any":
        return ast.AnyOf(path, _match_list(value, where), Typing.STRICT)
    if kind == "except":
        return ast.Except(path, _match_list(value, where))
    if not isinstance(value, str):
        raise _fail(where, f"`{kind}` must be a string")
    if kind in ("text", "text_any", "phrase"):
        return ast.Text(path, value, ast.TextMode(kind))
    if kind == "prefix":
        return ast.Prefix(path, value)
    if kind == "substring":
        return ast.Substring(path, value)
    raise _fail(where, f"unknown match `{kind}`")


def _match_value(value: Any, where: str) -> str | int | bool:
    if isinstance(value, str | bool) or (is_integer(value) and -_I64 <= value < _I64):
        return value
    raise _fail(where, f"{value!r} is not a string, a 64-bit integer or a boolean")


def _match_list(values: Any, where: str) -> tuple[str | int, ...]:
    if isinstance(values, list):
        if all(isinstance(v, str) for v in values):
            return tuple(values)
        if all(is_integer(v) and -_I64 <= v < _I64 for v in values):
            return tuple(values)
    raise _fail(where, "expected a list of strings or a list of 64-bit integers")


def _range(path: Path, obj: Any, where: str) -> Node:
    if not isinstance(obj, dict) or not set(obj) <= set(_BOUNDS):
        raise _fail(where, "`range` takes gt, gte, lt and lte")
    bounds = {name: value for name, value in obj.items() if value is not None}
    if all(isinstance(v, str) for v in bounds.values()) and bounds:
        moments = {name: _moment(value, f"{where}.{name}") for name, value in bounds.items()}
        return ast.DatetimeRange(path, **moments)
    return ast.Range(path, **{n: float(_number(v, f"{where}.{n}")) for n, v in bounds.items()})


def _moment(value: str, where: str) -> Any:
    parsed = parse_datetime(value)
    if parsed is None:
        raise _fail(where, f"{value!r} is not an RFC 3339 date or datetime")
    return as_utc(parsed)


def _values_count(path: Path, obj: Any, where: str) -> Node:
    if not isinstance(obj, dict) or not set(obj) <= set(_BOUNDS):
        raise _fail(where, "`values_count` takes gt, gte, lt and lte")
    bounds = {name: value for name, value in obj.items() if value is not None}
    for name, value in bounds.items():
        if not is_integer(value) or value < 0:
            raise _fail(f"{where}.{name}", "expected a non-negative integer")
    return ast.ValuesCount(path, **bounds)


def _flag(kind: type[ast.IsEmpty] | type[ast.IsNull]) -> Any:
    def parse(path: Path, value: Any, where: str) -> Node:
        if not isinstance(value, bool):
            raise _fail(where, "expected true or false")
        return kind(path) if value else Not(kind(path))

    return parse


def _geo_box(path: Path, obj: Any, where: str) -> Node:
    _require(obj, {"top_left", "bottom_right"}, where)
    top_left = _geo_point(obj["top_left"], f"{where}.top_left")
    bottom_right = _geo_point(obj["bottom_right"], f"{where}.bottom_right")
    return ast.GeoBoundingBox(path, top_left, bottom_right)


def _geo_radius(path: Path, obj: Any, where: str) -> Node:
    _require(obj, {"center", "radius"}, where)
    radius = _number(obj["radius"], f"{where}.radius")
    return ast.GeoRadius(path, _geo_point(obj["center"], f"{where}.center"), float(radius))


def _geo_polygon(path: Path, obj: Any, where: str) -> Node:
    if (
        not isinstance(obj, dict)
        or "exterior" not in obj
        or not set(obj)
        <= {
            "exterior",
            "interiors",
        }
    ):
        raise _fail(where, "expected {exterior: {points: [...]}, interiors: [...]}")
    exterior = _ring(obj["exterior"], f"{where}.exterior")
    interiors = obj.get("interiors") or []
    if not isinstance(interiors, list):
        raise _fail(f"{where}.interiors", "expected a list of rings")
    holes = tuple(_ring(r, f"{where}.interiors[{i}]") for i, r in enumerate(interiors))
    return ast.GeoPolygon(path, exterior, holes)


def _ring(obj: Any, where: str) -> tuple[ast.GeoPoint, ...]:
    _require(obj, {"points"}, where)
    points = obj["points"]
    if not isinstance(points, list) or len(points) < 4:
        raise _fail(f"{where}.points", "a ring needs at least 4 points")
    ring = tuple(_geo_point(p, f"{where}.points[{i}]") for i, p in enumerate(points))
    if ring[0] != ring[-1]:
        raise _fail(f"{where}.points", "the last point of a ring must equal the first")
    return ring


def _geo_point(obj: Any, where: str) -> ast.GeoPoint:
    _require(obj, {"lat", "lon"}, where)
    lat, lon = _number(obj["lat"], f"{where}.lat"), _number(obj["lon"], f"{where}.lon")
    if not -90 <= lat <= 90:
        raise _fail(f"{where}.lat", "latitude must be within [-90, 90]")
    if not -180 <= lon <= 180:
        raise _fail(f"{where}.lon", "longitude must be within [-180, 180]")
    return ast.GeoPoint(float(lat), float(lon))


_FIELD_PARSERS = {
    "match": _match,
    "range": _range,
    "geo_bounding_box": _geo_box,
    "geo_radius": _geo_radius,
    "geo_polygon": _geo_polygon,
    "values_count": _values_count,
    "is_empty": _flag(ast.IsEmpty),
    "is_null": _flag(ast.IsNull),
}


def _require(obj: Any, keys: set[str], where: str) -> None:
    if not isinstance(obj, dict) or set(obj) != keys:
        raise _fail(where, f"expected an object with {', '.join(sorted(keys))}")


def _number(value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"{value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _fail(where, "numbers must be finite")
    return value


# --- key paths ---------------------------------------------------------------------------------


def parse_key(key: Any, where: str = "key") -> Path:
    """A Qdrant key (`a.b`, `a[]`, `a[0]`, `"dotted.key"`, `a[][1]`) as a flattening path.

    The grammar is local mode's `json_path_parser`: bare names of letters, digits, `_` and
    `-`, or double-quoted names; each optionally followed by `[]` or `[n]`; joined by `.`.
    """
    if not isinstance(key, str) or not key:
        raise _fail(where, "a key must be a non-empty string")
    steps: list[ast.Step] = []
    rest = key
    while rest:
        name, rest = _key_name(rest, key, where)
        steps.append(Key(name))
        while rest.startswith("["):
            step, rest = _bracket(rest, key, where)
            steps.append(step)
        if rest:
            if not rest.startswith(".") or len(rest) == 1:
                raise _fail(where, f"invalid key `{key}`")
            rest = rest[1:]
    return Path(tuple(steps), flatten=True)


def _key_name(rest: str, key: str, where: str) -> tuple[str, str]:
    if rest.startswith('"'):
        end = rest.find('"', 1)
        if end == -1:
            raise _fail(where, f"unterminated quote in key `{key}`")
        return rest[1:end], rest[end + 1 :]
    length = 0
    while length < len(rest) and (rest[length].isalnum() or rest[length] in "_-"):
        length += 1
    if length == 0:
        raise _fail(where, f"invalid key `{key}`")
    return rest[:length], rest[length:]


def _bracket(rest: str, key: str, where: str) -> tuple[ast.Step, str]:
    end = rest.find("]")
    if end == -1:
        raise _fail(where, f"unterminated '[' in key `{key}`")
    inside = rest[1:end]
    if not inside:
        return Each(), rest[end + 1 :]
    if not (inside.isascii() and inside.isdigit()) or int(inside) >= _U64:
        raise _fail(where, f"invalid array index `[{inside}]` in key `{key}`")
    return Index(int(inside)), rest[end + 1 :]
