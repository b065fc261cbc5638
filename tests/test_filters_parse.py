"""Unit tests for the two filter parsers: every operator, precedence, and errors with places."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.errors import BadRequest
from app.filters import parse_qdrant_filter, parse_upstash_filter
from app.filters.ast import (
    FALSE,
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
    Not,
    Or,
    Path,
    Prefix,
    Range,
    Substring,
    Text,
    TextMode,
    Typing,
    ValuesCount,
)
from app.filters.qdrant import parse_key
from app.filters.upstash import parse_path


def q(*names: str | int | None) -> Path:
    """A Qdrant path: str keys, int indexes, None for `[]`."""
    steps = [Key(n) if isinstance(n, str) else Each() if n is None else Index(n) for n in names]
    return Path(tuple(steps), flatten=True)


def u(*names: str | int) -> Path:
    steps = [Key(n) if isinstance(n, str) else Index(n) for n in names]
    return Path(tuple(steps), flatten=False)


def field(key: str, **condition: object) -> dict[str, object]:
    return {"must": {"key": key, **condition}}


# --- Qdrant ------------------------------------------------------------------------------------


def test_no_filter() -> None:
    assert parse_qdrant_filter(None) is None
    assert parse_qdrant_filter({}) is None
    assert parse_qdrant_filter({"must": [], "should": []}) is None


def test_clauses_single_or_list() -> None:
    a = {"key": "a", "match": {"value": 1}}
    b = {"key": "b", "match": {"value": "x"}}
    ea, eb = Equals(q("a"), 1, Typing.STRICT), Equals(q("b"), "x", Typing.STRICT)
    assert parse_qdrant_filter({"must": a}) == ea
    assert parse_qdrant_filter({"must": [a, b]}) == And((ea, eb))
    assert parse_qdrant_filter({"should": [a, b]}) == Or((ea, eb))
    assert parse_qdrant_filter({"must_not": [a, b]}) == And((Not(ea), Not(eb)))
    assert parse_qdrant_filter({"must": a, "must_not": b, "should": [a]}) == And((ea, Not(eb), ea))
    assert parse_qdrant_filter({"min_should": {"conditions": [a, b], "min_count": 1}}) == (
        MinShould((ea, eb), 1)
    )
    assert parse_qdrant_filter({"min_should": {"conditions": [a], "min_count": 2}}) == FALSE
    assert parse_qdrant_filter({"must": [{"should": [a, b]}]}) == Or((ea, eb))


@pytest.mark.parametrize(
    ("match", "node"),
    [
        ({"value": "x"}, Equals(q("k"), "x", Typing.STRICT)),
        ({"value": True}, Equals(q("k"), True, Typing.STRICT)),
        ({"any": [1, 2]}, AnyOf(q("k"), (1, 2), Typing.STRICT)),
        ({"any": []}, AnyOf(q("k"), (), Typing.STRICT)),
        ({"except": ["a"]}, Except(q("k"), ("a",))),
        ({"text": "a b"}, Text(q("k"), "a b", TextMode.ALL)),
        ({"text_any": "a b"}, Text(q("k"), "a b", TextMode.ANY)),
        ({"phrase": "a b"}, Text(q("k"), "a b", TextMode.PHRASE)),
        ({"prefix": "ab"}, Prefix(q("k"), "ab")),
        ({"substring": "b"}, Substring(q("k"), "b")),
    ],
)
def test_match(match: dict[str, object], node: object) -> None:
    assert parse_qdrant_filter(field("k", match=match)) == node


def test_range_numbers_and_datetimes() -> None:
    assert parse_qdrant_filter(field("n", range={"gt": 1, "lte": 2.5})) == Range(
        q("n"), gt=1.0, lte=2.5
    )
    node = parse_qdrant_filter(
        field("t", range={"gte": "2023-01-01", "lt": "2023-06-01T12:00:00+02:00"})
    )
    assert node == DatetimeRange(
        q("t"),
        gte=datetime(2023, 1, 1, tzinfo=UTC),
        lt=datetime(2023, 6, 1, 12, tzinfo=timezone(timedelta(hours=2))),
    )
    naive = parse_qdrant_filter(field("t", range={"gt": "2023-01-01T10:00:00"}))
    assert isinstance(naive, DatetimeRange) and naive.gt == datetime(2023, 1, 1, 10, tzinfo=UTC)


def test_other_conditions() -> None:
    assert parse_qdrant_filter(field("k", values_count={"gte": 2})) == ValuesCount(q("k"), gte=2)
    assert parse_qdrant_filter(field("k", is_empty=True)) == IsEmpty(q("k"))
    assert parse_qdrant_filter(field("k", is_null=False)) == Not(IsNull(q("k")))
    assert parse_qdrant_filter({"must": {"is_empty": {"key": "k"}}}) == IsEmpty(q("k"))
    assert parse_qdrant_filter({"must": {"is_null": {"key": "k"}}}) == IsNull(q("k"))
    uid = "4A8E06C0-0D0A-4C4E-9A0E-3B2C1D0E0F10"
    assert parse_qdrant_filter({"must": {"has_id": [1, uid]}}) == HasId(frozenset({1, uid.lower()}))
    assert parse_qdrant_filter({"must": {"has_vector": "img"}}) == HasVector("img")
    nested = {"nested": {"key": "arr[]", "filter": {"must": {"key": "a", "match": {"value": 1}}}}}
    assert parse_qdrant_filter({"must": nested}) == Nested(
        q("arr"), Equals(q("a"), 1, Typing.STRICT)
    )


def test_geo() -> None:
    box = {"top_left": {"lat": 10, "lon": 170}, "bottom_right": {"lat": -10, "lon": -170}}
    assert parse_qdrant_filter(field("g", geo_bounding_box=box)) == GeoBoundingBox(
        q("g"), GeoPoint(10, 170), GeoPoint(-10, -170)
    )
    radius = {"center": {"lat": 1, "lon": 2}, "radius": 1000}
    assert parse_qdrant_filter(field("g", geo_radius=radius)) == GeoRadius(
        q("g"), GeoPoint(1, 2), 1000.0
    )
    ring = {"points": [{"lat": 0, "lon": 0}, {"lat": 0, "lon": 1}, {"lat": 1, "lon": 1}]}
    ring["points"].append(ring["points"][0])
    polygon = parse_qdrant_filter(field("g", geo_polygon={"exterior": ring, "interiors": [ring]}))
    assert isinstance(polygon, GeoPolygon) and len(polygon.interiors) == 1


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("a", q("a")),
        ("a.b", q("a", "b")),
        ("a[]", q("a", None)),
        ("a[0].b", q("a", 0, "b")),
        ("a[][]", q("a", None, None)),
        ("a[0][1]", q("a", 0, 1)),
        ('"a.b".c', q("a.b", "c")),
        ("k-1_é", q("k-1_é")),
    ],
)
def test_keys(key: str, path: Path) -> None:
    assert parse_key(key) == path


@pytest.mark.parametrize("key", ["", "a.", ".a", "a..b", "a[x]", "a[", "a b", '"a', "a[-1]"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(BadRequest, match="Wrong input"):
        parse_key(key)


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"must": {"key": "a", "match": {"value": 1.5}}}, "filter.must.match.value"),
        ({"must": [{}, {"key": "a"}]}, "filter.must[1]"),
        ({"must": {"key": "a", "match": {"value": 1}, "range": {"gt": 1}}}, "filter.must"),
        ({"must": {"key": "a", "match": {"any": ["a", 1]}}}, "filter.must.match.any"),
        ({"must": {"key": "a", "match": {"regex": "x"}}}, "filter.must.match.regex"),
        ({"should": {"key": "a", "range": {"gt": "yesterday"}}}, "filter.should.range.gt"),
        ({"must_not": {"has_id": ["nope"]}}, "filter.must_not.has_id[0]"),
        ({"must": {"frobnicate": 1}}, "filter.must"),
        ({"maybe": []}, "filter"),
        ({"min_should": {"conditions": [], "min_count": 0}}, "filter.min_should.min_count"),
        ({"must": {"key": "g", "geo_radius": {"center": {"lat": 91, "lon": 0}, "radius": 1}}},
         "filter.must.geo_radius.center.lat"),
        ({"must": {"slice": {"total": 2, "index": 0}}}, "filter.must.slice"),
    ],
)  # fmt: skip
def test_qdrant_errors_name_the_place(obj: dict[str, object], where: str) -> None:
    with pytest.raises(BadRequest) as error:
        parse_qdrant_filter(obj)
    assert error.value.message.startswith("Wrong input: ")
    assert error.value.message.endswith(f"at `{where}`")


# --- Upstash -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "node"),
    [
        ("a = 'x'", Equals(u("a"), "x", Typing.LOOSE)),
        ('a = "x"', Equals(u("a"), "x", Typing.LOOSE)),
        ("a = 1", Equals(u("a"), 1, Typing.LOOSE)),
        ("a = -1.5e2", Equals(u("a"), -150.0, Typing.LOOSE)),
        ("a = .5", Equals(u("a"), 0.5, Typing.LOOSE)),
        ("a = TRUE", Equals(u("a"), True, Typing.LOOSE)),
        ("a != false", Differs(u("a"), False)),
        ("a < 1", Range(u("a"), lt=1)),
        ("a <= 1", Range(u("a"), lte=1)),
        ("a > 1", Range(u("a"), gt=1)),
        ("a >= -2", Range(u("a"), gte=-2)),
        ("a GLOB 'x*'", Glob(u("a"), "x*")),
        ("a not glob 'x*'", Glob(u("a"), "x*", negated=True)),
        ("a IN ('x', 2, true)", AnyOf(u("a"), ("x", 2, True), Typing.LOOSE)),
        ("a NOT IN (1, 2)", And((Differs(u("a"), 1), Differs(u("a"), 2)))),
        ("tags CONTAINS 'x'", Contains(u("tags"), "x")),
        ("tags NOT CONTAINS 0", Contains(u("tags"), 0, negated=True)),
        ("HAS FIELD a.b", Exists(u("a", "b"))),
        ("has not field a", Not(Exists(u("a")))),
        ("a.b[2].c[#-1] = 1", Equals(u("a", "b", 2, "c", -1), 1, Typing.LOOSE)),
        ("has = 1", Equals(u("has"), 1, Typing.LOOSE)),
        ("a = 'it\\'s'", Equals(u("a"), "it's", Typing.LOOSE)),
        ('a = "a\\"b\\\\c\\d"', Equals(u("a"), 'a"b\\c\\d', Typing.LOOSE)),
    ],
)
def test_upstash_predicates(text: str, node: object) -> None:
    assert parse_upstash_filter(text) == node


def test_upstash_precedence_and_groups() -> None:
    a, b, c = (Equals(u(k), 1, Typing.LOOSE) for k in "abc")
    assert parse_upstash_filter("a = 1 OR b = 1 AND c = 1") == Or((a, And((b, c))))
    assert parse_upstash_filter("a = 1 and b = 1 or c = 1") == Or((And((a, b)), c))
    assert parse_upstash_filter("(a = 1 OR b = 1) AND c = 1") == And((Or((a, b)), c))
    assert parse_upstash_filter("((a=1))") == a
    assert parse_upstash_filter("") is None
    assert parse_upstash_filter("   ") is None


def test_upstash_paths() -> None:
    assert parse_path("a[0][#-2]") == u("a", 0, -2)
    with pytest.raises(BadRequest, match="position 3"):
        parse_path("a[#-0]", 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("country = 'x' AND price =", "expected a value after '=' at position 25"),
        ("a = 1 AND", "expected a field name, found the end of the filter at position 9"),
        ("a < 'x'", "expected a number after '<' at position 4"),
        ("a = 1 b = 2", "expected AND or OR, found 'b' at position 6"),
        ("(a = 1", "expected ')' to close the '(' at position 0, found the end"),
        ("a = 1)", "expected AND, OR or ')', found ')' at position 5"),
        ("a = 'x", "unterminated string at position 4"),
        ("a = 1 & b = 2", "unexpected character '&' at position 6"),
        ("NOT (a = 1)", "NOT can only be used in NOT GLOB"),
        ("a NOT = 1", "expected GLOB, IN or CONTAINS after 'a', found '=' at position 6"),
        ("a LIKE 'x'", "expected an operator after 'a', found 'LIKE' at position 2"),
        ("a IN 1", "expected '(' after IN, found '1' at position 5"),
        ("a IN (1 2)", "expected ',' or ')' in the IN list, found '2' at position 8"),
        ("a IN ()", "expected a value in the IN list at position 6"),
        ("a GLOB 1", "expected a quoted pattern after GLOB at position 7"),
        ("a GLOB '[ab'", "unterminated '[' in GLOB pattern"),
        ("a GLOB '[z-a]'", "reversed range z-a"),
        ("HAS a", "expected an operator after 'HAS', found 'a' at position 4"),
        ("HAS NOT a", "expected FIELD after HAS NOT at position 8"),
        ("a..b = 1", "invalid field name 'a..b' at position 2"),
        ("a[x] = 1", "invalid array index [x]"),
        ("a = 1e999", "number 1e999 is out of range at position 4"),
    ],
)
def test_upstash_errors_say_where(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as error:
        parse_upstash_filter(text)
    assert error.value.message.startswith("Invalid filter: ")
    assert message in error.value.message
