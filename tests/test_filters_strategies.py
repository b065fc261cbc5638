"""Random payloads and filters for the filter tests, plus checks that they stay meaningful.

The generators take a `random.Random`: the local-mode test seeds one, the property test gets one
from Hypothesis (`st.randoms()`), so both draw from the same rich vocabulary. Keys, words,
numbers and coordinates come from small pools so that conditions often hit the values
present, the edge values (integral floats, booleans, nulls, empty arrays, antimeridian boxes)
come up often, and the payload shapes vary (nested objects, arrays of objects, arrays of arrays).
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from app.filters import parse_qdrant_filter, parse_upstash_filter

WORDS = ["foo", "bar", "Foo", "BAR", "hello", "world", "x_y", "foo2", "é", "Ünïcode", "a-b", "*"]
WORDS += [""]
INTS = [0, 1, 2, 42, -1, 2**40]
FLOATS = [0.0, 1.0, 2.0, 42.0, 0.5, -1.5, 1e-7, -0.0]
VECTOR_NAMES = ["", "img", "txt"]
TOP_KEYS = ["a", "a", "n", "n", "s", "tags", "obj", "arr", "geo", "when", "k-1", "é"]
INNER_KEYS = ["a", "b", "n", "geo", "tags", "when"]
UUIDS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(8)]

QDRANT_KEYS = [
    "a", "a", "a", "n", "n", "s", "s", "tags", "obj.a", "obj.n", "arr[].a", "b", "tags",
    "tags[]", "tags[0]", "tags[1]", "obj", "obj.a", "obj.b",
    "obj.n", "obj.tags", "obj.tags[]", "arr", "arr[]", "arr[].a", "arr[0].a", "arr[].n",
    "arr[][]", "arr[].tags[]", "arr[].geo", "geo", "obj.geo", "when", "obj.when", "arr[].when",
    "k-1", "é", '"k-1"', "missing", "a.b",
]  # fmt: skip
UPSTASH_PATHS = [
    "a", "a", "a", "n", "n", "s", "s", "tags", "obj.a", "b", "tags", "tags[0]", "tags[1]",
    "tags[#-1]", "tags[#-2]", "obj.a",
    "obj.b", "obj.n", "obj.tags", "obj.tags[0]", "arr[0].a", "arr[#-1].n", "k-1", "when",
    "missing", "geo.lat",
]  # fmt: skip
NESTED_KEYS = ["arr", "arr[]", "obj.tags", "tags", "obj"]


# --- payloads ----------------------------------------------------------------------------------


def datetime_string(r: random.Random) -> str:
    """Mostly RFC 3339 spellings, some of local mode's rarer ones, some invalid dates."""
    date = f"{r.choice([2019, 2020, 2023, 2024])}-{r.choice(['01', '02', '06', '12'])}"
    date += f"-{r.choice(['01', '15', '28', '29', '30', '31'])}"
    time = f"{r.choice(['00', '09', '12', '23'])}:{r.choice(['00', '30', '59'])}"
    seconds = f":{r.choice(['00', '07', '59'])}"
    fraction = r.choice(["", ".5", ".123456", ".1234567"])
    zone = r.choice(["", "Z", "z", "+01:00", "-05:30", "+0200", "+03", " UTC", " +01:00", " Z"])
    sep = r.choice(["T", "T", " ", "t"])
    shape = r.random()
    if shape < 0.15:
        return date
    if shape < 0.25:
        return f"{date}{sep}{time}"
    if shape < 0.3:
        odd = ["2023-1-5", " 2023-06-01T00:00:00Z", "2023-06-01T24:00:00", "2023-06-01T12:00:60"]
        return r.choice(odd)
    return f"{date}{sep}{time}{seconds}{fraction}{zone}"


def geo_value(r: random.Random) -> dict[str, Any]:
    lat = r.choice([r.uniform(-90, 90), r.randint(-80, 80), 0.0, 52.5, 1e-200])
    lon = r.choice([r.uniform(-180, 180), r.randint(-170, 170), 179.5, -179.5, 13.4])
    point: dict[str, Any] = {"lat": round(lat, 4) if isinstance(lat, float) and lat > 1e-9 else lat}
    point["lon"] = round(lon, 4) if isinstance(lon, float) else lon
    if r.random() < 0.1:
        point["name"] = "place"
    if r.random() < 0.05:
        point["lat"] = "52.5"  # not a geo point
    return point


def scalar(r: random.Random) -> Any:
    kind = r.random()
    if kind < 0.08:
        return None
    if kind < 0.16:
        return r.choice([True, False])
    if kind < 0.36:
        return r.choice(INTS)
    if kind < 0.5:
        return r.choice([*FLOATS, round(r.uniform(-100, 100), r.randint(0, 3))])
    if kind < 0.75:
        return " ".join(r.choice(WORDS) for _ in range(r.randint(1, 3)))
    if kind < 0.9:
        return datetime_string(r)
    return geo_value(r)


def value(r: random.Random, depth: int = 0) -> Any:
    kind = r.random()
    if depth >= 3 or kind < 0.6:
        return scalar(r)
    if kind < 0.82:
        return [value(r, depth + 1) for _ in range(r.randint(0, 3))]
    return {key: value(r, depth + 1) for key in r.sample(INNER_KEYS, r.randint(1, 3))}


def payload(r: random.Random) -> dict[str, Any] | None:
    if r.random() < 0.05:
        return None
    result = {key: value(r) for key in r.sample(TOP_KEYS, r.randint(1, 7))}
    if r.random() < 0.4:
        result["arr"] = [
            {key: value(r, 2) for key in r.sample(INNER_KEYS, r.randint(0, 3))}
            for _ in range(r.randint(0, 3))
        ]
    if r.random() < 0.4:
        pool = [*WORDS, *INTS, True, None, 1.0]
        result["tags"] = [r.choice(pool) for _ in range(r.randint(0, 3))]
    return result


def point_id(r: random.Random) -> int | str:
    return r.choice([r.randint(0, 30), r.choice(UUIDS)])


def vector_names(r: random.Random) -> frozenset[str]:
    return frozenset(name for name in VECTOR_NAMES if r.random() < 0.5)


# --- Qdrant filters ----------------------------------------------------------------------------


def qdrant_filter(r: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth == 0 and r.random() < 0.4:  # a lone condition, so that no other can mask it
        return {r.choice(["must", "must_not"]): qdrant_condition(r, depth)}
    result: dict[str, Any] = {}
    for clause in ("must", "should", "must_not"):
        if r.random() < 0.45:
            conditions = [qdrant_condition(r, depth) for _ in range(r.randint(0, 3))]
            single = len(conditions) == 1 and r.random() < 0.5
            result[clause] = conditions[0] if single else conditions
    if r.random() < 0.12:
        conditions = [qdrant_condition(r, depth) for _ in range(r.randint(1, 3))]
        result["min_should"] = {"conditions": conditions, "min_count": r.randint(1, 3)}
    if not result:
        result["must"] = [qdrant_condition(r, depth)]
    return result


def qdrant_condition(r: random.Random, depth: int = 0) -> dict[str, Any]:
    kind = r.random()
    if depth < 2 and kind < 0.08:
        return qdrant_filter(r, depth + 1)
    if depth < 2 and kind < 0.15:
        return {"nested": {"key": r.choice(NESTED_KEYS), "filter": qdrant_filter(r, depth + 1)}}
    if kind < 0.2:
        return {r.choice(["is_empty", "is_null"]): {"key": r.choice(QDRANT_KEYS)}}
    if kind < 0.23:
        return {"has_id": [point_id(r) for _ in range(r.randint(0, 4))]}
    if kind < 0.26:
        return {"has_vector": r.choice(VECTOR_NAMES)}
    return {"key": r.choice(QDRANT_KEYS), **field_test(r)}


def field_test(r: random.Random) -> dict[str, Any]:
    kind = r.random()
    if kind < 0.4:
        return {"match": match(r)}
    if kind < 0.55:
        return {"range": number_range(r)}
    if kind < 0.65:
        return {"range": datetime_range(r)}
    if kind < 0.72:
        return {"values_count": bounds(r, lambda: r.randint(0, 3))}
    if kind < 0.78:
        return {r.choice(["is_empty", "is_null"]): r.choice([True, False])}
    return geo_test(r)


def match(r: random.Random) -> dict[str, Any]:
    kind = r.choice(["value", "value", "any", "except", "text", "text_any", "phrase", "prefix"])
    if kind == "value":
        return {"value": r.choice([r.choice(WORDS), r.choice(INTS), r.choice([True, False])])}
    if kind in ("any", "except"):
        pool = WORDS if r.random() < 0.5 else INTS
        return {kind: r.sample(pool, r.randint(0, 3))}
    if kind == "prefix":
        return {"prefix": r.choice(["fo", "F", "", "hello w", "2023-0", "é"])}
    query = " ".join(r.choice(WORDS) for _ in range(r.randint(0, 3)))
    return {kind: r.choice([query, "hello world", "FOO", "foo bar", "x y"])}


def bounds(r: random.Random, draw: Any) -> dict[str, Any]:
    return {name: draw() for name in r.sample(["gt", "gte", "lt", "lte"], r.randint(0, 2))}


def number_range(r: random.Random) -> dict[str, Any]:
    return bounds(r, lambda: r.choice(INTS + FLOATS + [-2, 1.5, 100]))


def datetime_range(r: random.Random) -> dict[str, Any]:
    def moment() -> str:
        return r.choice(
            ["2020-01-01", "2023-06-01T00:00:00Z", "2023-06-15T12:30:00+02:00",
             "2024-02-29T23:59:59.999999Z", "2019-12-31T23:00:00-01:00", "2023-01-01T00:00:00"]
        )  # fmt: skip

    drawn = bounds(r, moment)
    return drawn or {"gte": moment()}


def geo_test(r: random.Random) -> dict[str, Any]:
    lat, lon = r.uniform(-60, 60), r.uniform(-170, 170)
    kind = r.random()
    if kind < 0.35:
        left, right = r.choice([(lon - 40, lon + 40), (170.0, -170.0), (-180.0, 180.0)])
        left, right = max(-180, left), min(180, right)
        top_left = {"lat": min(lat + 40, 90), "lon": left}
        bottom_right = {"lat": max(lat - 40, -90), "lon": right}
        return {"geo_bounding_box": {"top_left": top_left, "bottom_right": bottom_right}}
    if kind < 0.65:
        center = {"lat": round(lat, 3), "lon": round(lon, 3)}
        return {"geo_radius": {"center": center, "radius": r.choice([1e5, 1e6, 5e6, 2e7])}}
    size = r.uniform(10, 60)
    exterior = _square(lat, lon, size)
    interiors = [_square(lat, lon, size / 3)] if r.random() < 0.4 else None
    return {"geo_polygon": {"exterior": exterior, "interiors": interiors}}


def _square(lat: float, lon: float, size: float) -> dict[str, Any]:
    corners = [(lat - size, lon - size), (lat - size, lon + size), (lat + size, lon + size),
               (lat + size, lon - size)]  # fmt: skip
    points = [{"lat": max(-90, min(90, a)), "lon": max(-180, min(180, b))} for a, b in corners]
    return {"points": [*points, points[0]]}


# --- Upstash filters ---------------------------------------------------------------------------


def upstash_filter(r: random.Random, depth: int = 0) -> str:
    if depth < 2 and r.random() < 0.25:
        joiner = r.choice(["AND", "OR", "and", "Or"])
        parts = [upstash_filter(r, depth + 1) for _ in range(r.randint(2, 3))]
        text = f" {joiner} ".join(parts)
        return f"({text})" if r.random() < 0.6 else text
    return upstash_predicate(r)


def upstash_predicate(r: random.Random) -> str:
    path = r.choice(UPSTASH_PATHS)
    kind = r.random()
    if kind < 0.3:
        return f"{path} {r.choice(['=', '!='])} {upstash_literal(r)}"
    if kind < 0.45:
        return f"{path} {r.choice(['<', '<=', '>', '>='])} {upstash_number(r)}"
    if kind < 0.6:
        pattern = r.choice(["fo*", "*o*", "?ar", "[fb]*", "[^f]*", "[a-c]*", "*", "hello *", "F*"])
        return f"{path} {r.choice(['GLOB', 'NOT GLOB', 'glob'])} {upstash_string(r, pattern)}"
    if kind < 0.75:
        literals = ", ".join(upstash_literal(r) for _ in range(r.randint(1, 3)))
        return f"{path} {r.choice(['IN', 'NOT IN', 'in'])} ({literals})"
    if kind < 0.9:
        return f"{path} {r.choice(['CONTAINS', 'NOT CONTAINS'])} {upstash_literal(r)}"
    return f"{r.choice(['HAS FIELD', 'HAS NOT FIELD', 'has field'])} {path}"


def upstash_literal(r: random.Random) -> str:
    kind = r.random()
    if kind < 0.45:
        return upstash_string(r, " ".join(r.choice(WORDS) for _ in range(r.randint(1, 2))))
    if kind < 0.8:
        return upstash_number(r)
    return r.choice(["true", "false", "TRUE", "False", "1", "0"])


def upstash_number(r: random.Random) -> str:
    return r.choice(["0", "1", "2", "-1", "42", "1.0", "0.5", "-1.5", "1e1", "4.2e1", "1e-7"])


def upstash_string(r: random.Random, text: str) -> str:
    quote = r.choice(["'", '"'])
    escaped = text.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return f"{quote}{escaped}{quote}"


# --- the generators produce what the parsers accept --------------------------------------------


def test_generated_filters_parse() -> None:
    r = random.Random(1)
    parsed = [parse_qdrant_filter(qdrant_filter(r)) for _ in range(300)]
    assert sum(node is not None for node in parsed) > 250  # mostly real constraints
    for _ in range(300):
        assert parse_upstash_filter(upstash_filter(r)) is not None


def test_generated_payloads_are_json() -> None:
    r = random.Random(2)
    for _ in range(300):
        document = payload(r)
        assert json.loads(json.dumps(document)) == document
