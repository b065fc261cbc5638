"""What one payload value means to a condition: the rules every back end must agree on.

The reference evaluator and the predicate compiler call these functions; the SQL compiler
re-states each rule in SQL, and the tests check that it does so faithfully. Qdrant rules mirror
qdrant-client 1.20 local mode (`qdrant_client/local/payload_filters.py`, `geo.py`,
`datetime_utils.py`), which is what the Qdrant dialect is tested against.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from app.filters.ast import Each, GeoPoint, Index, Key, Path, Scalar, Step

MEAN_EARTH_RADIUS = 6371008.8
"""Metres; the IUGG mean radius that qdrant-client local mode uses for `geo_radius`."""


# --- key paths ---------------------------------------------------------------------------------


def raw_values(payload: Any, steps: tuple[Step, ...]) -> list[Any]:
    """Every value a key path leads to, arrays kept whole (local mode's `flat=False`)."""
    found: list[Any] = []

    def walk(data: Any, rest: tuple[Step, ...]) -> None:
        if not rest:
            found.append(data)
            return
        step, tail = rest[0], rest[1:]
        match step:
            case Key(name) if isinstance(data, dict) and name in data:
                walk(data[name], tail)
            case Index(position) if isinstance(data, list) and -len(data) <= position < len(data):
                walk(data[position], tail)
            case Each() if isinstance(data, list):
                for item in data:
                    walk(item, tail)

    walk(payload, steps)
    return found


def flattened(values: list[Any]) -> list[Any]:
    """Arrays replaced by their elements, one level (local mode's `flat=True`)."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, list):
            out.extend(value)
        else:
            out.append(value)
    return out


def tested_values(payload: Any, path: Path) -> list[Any]:
    """The values a value test looks at: see `Path.flatten`."""
    values = raw_values(payload, path.steps)
    return flattened(values) if path.flatten else values


# --- equality ----------------------------------------------------------------------------------


def strict_equal(value: Any, literal: Any) -> bool:
    """Qdrant: bool, int and float are distinct types, and a float never matches a literal."""
    if isinstance(value, bool) != isinstance(literal, bool):
        return False
    if isinstance(value, float) != isinstance(literal, float):
        return False
    return value == literal


def loose_number(value: Any) -> int | float | None:
    """Upstash: the number a value stands for in `=`/`!=`/`IN`/`CONTAINS` (true is 1)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    return None


def loose_comparable(value: Any, literal: Scalar) -> bool:
    """Whether an Upstash literal and a value can be compared at all (else the test fails)."""
    if isinstance(literal, str):
        return isinstance(value, str)
    return loose_number(value) is not None


def loose_equal(value: Any, literal: Scalar) -> bool:
    """Upstash equality: strings by content, numbers (and booleans as 1/0) by value."""
    if isinstance(literal, str):
        return isinstance(value, str) and value == literal
    number = loose_number(value)
    return number is not None and number == loose_number(literal)


def is_number(value: Any) -> bool:
    """A JSON number: booleans are not numbers to `range`/`<`."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """A JSON integer: Python's `True` is an `int`, but not one to Qdrant."""
    return isinstance(value, int) and not isinstance(value, bool)


def in_bounds(value: Any, gt: Any, gte: Any, lt: Any, lte: Any) -> bool:
    return (
        (gt is None or value > gt)
        and (gte is None or value >= gte)
        and (lt is None or value < lt)
        and (lte is None or value <= lte)
    )


def value_count(value: Any) -> int:
    """`values_count` counts an array as its length, a null as nothing and anything else as 1."""
    if value is None:
        return 0
    return len(value) if isinstance(value, list) else 1


# --- full text ---------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")


def text_tokens(text: str) -> list[str]:
    """The server's default word tokenizer on unindexed fields: alphanumeric runs, lowercased."""
    return [token.lower() for token in _WORD.findall(text)]


def text_matches(document: str, query_tokens: list[str], mode: str) -> bool:
    """`mode` is a `TextMode` value; an empty query matches nothing."""
    tokens = text_tokens(document)
    if mode == "text_any":
        present = set(tokens)
        return any(token in present for token in query_tokens)
    if not query_tokens:
        return False
    if mode == "text":
        present = set(tokens)
        return all(token in present for token in query_tokens)
    width = len(query_tokens)
    return any(tokens[i : i + width] == query_tokens for i in range(len(tokens) - width + 1))


# --- datetimes ---------------------------------------------------------------------------------

_DATETIME_FORMATS = [
    "%Y-%m-%dT%H:%M:%S.%f%z",
    "%Y-%m-%d %H:%M:%S.%f%z",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S.%f %z",
    "%Y-%m-%d %H:%M:%S.%f %z",
    "%Y-%m-%dT%H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
]


def parse_datetime(text: str) -> datetime | None:
    """A payload string as an aware datetime, or None; exactly local mode's leniencies.

    Leading whitespace, `T` or space, an optional offset (`Z`, `z`, ` UTC`, `+HH`, `+HHMM`,
    `+HH:MM`, also after a space), fractions cut to microseconds; no offset means UTC.
    """
    text = _normalize_datetime(text)
    parsed = _strptime_any(text)
    offset = text[-3:]
    if parsed is None and len(offset) == 3 and offset[0] in "+-" and offset[1:].isdigit():
        parsed = _strptime_any(text + ":00")
    return parsed


def _normalize_datetime(text: str) -> str:
    text = text.lstrip()
    if text.endswith(" UTC"):
        text = text[: -len(" UTC")] + "+00:00"
    elif text.endswith("z"):
        text = text[:-1] + "Z"
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and text[end].isdigit():
            end += 1
        if end - dot > 7:  # strptime's %f stops at microseconds: cut, don't round
            text = text[: dot + 7] + text[end:]
    return text


def _strptime_any(text: str) -> datetime | None:
    for fmt in _DATETIME_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def as_utc(moment: datetime) -> datetime:
    """A range bound: timezone-less means UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc_naive(moment: datetime) -> datetime:
    """The UTC wall time of an aware datetime (how SQL compares them)."""
    return (moment - (moment.utcoffset() or timedelta(0))).replace(tzinfo=None)


# --- geo ---------------------------------------------------------------------------------------


def geo_coordinates(value: Any) -> tuple[float, float] | None:
    """(lat, lon) of an object with finite numeric `lat` and `lon`, else None."""
    if not isinstance(value, dict):
        return None
    lat, lon = value.get("lat"), value.get("lon")
    if not (_finite_number(lat) and _finite_number(lon)):
        return None
    return lat, lon


def _finite_number(value: Any) -> bool:
    if type(value) is not int and type(value) is not float:
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def in_box(lat: float, lon: float, top_left: GeoPoint, bottom_right: GeoPoint) -> bool:
    """Strict inequalities; a left edge east of the right edge wraps the antimeridian."""
    if top_left.lon > bottom_right.lon:
        lon_ok = lon > top_left.lon or lon < bottom_right.lon
    else:
        lon_ok = top_left.lon < lon < bottom_right.lon
    return lon_ok and top_left.lat > lat > bottom_right.lat


def geo_distance(lat: float, lon: float, center: GeoPoint) -> float:
    """Haversine distance in metres, in local mode's order of operations (results to the bit).

    `sqrt` is capped at 1, where local mode would raise on a rounding error near the antipode.
    """
    lon1, lat1 = math.radians(lon), math.radians(lat)
    lon2, lat2 = math.radians(center.lon), math.radians(center.lat)
    dlon = lon2 - lon1
    dlat = lat2 - lat1
    a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return MEAN_EARTH_RADIUS * (2 * math.asin(min(1.0, math.sqrt(a))))


def closed_ring(points: tuple[GeoPoint, ...]) -> list[tuple[float, float]]:
    """(lat, lon) vertices, without a last point that repeats the first."""
    ring = [(point.lat, point.lon) for point in points]
    if ring and ring[0] == ring[-1]:
        ring.pop()
    return ring


def ring_position(lat: float, lon: float, ring: list[tuple[float, float]]) -> str:
    """ "boundary", "inside" or "outside" by ray casting, with local mode's arithmetic."""
    inside = False
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[i - 1]
        if (
            lon * (xi - xj) + yi * (xj - lat) + yj * (lat - xi) == 0
            and (xi - lat) * (xj - lat) <= 0
            and (yi - lon) * (yj - lon) <= 0
        ):
            return "boundary"
        if ((yi > lon) != (yj > lon)) and lat < (xj - xi) * (lon - yi) / (yj - yi) + xi:
            inside = not inside
    return "inside" if inside else "outside"


def in_polygon(
    lat: float,
    lon: float,
    exterior: list[tuple[float, float]],
    interiors: list[list[tuple[float, float]]],
) -> bool:
    """Inside the exterior and in no hole; a boundary point is outside the polygon."""
    if ring_position(lat, lon, exterior) != "inside":
        return False
    return all(ring_position(lat, lon, ring) == "outside" for ring in interiors)


# --- Upstash GLOB ------------------------------------------------------------------------------

_REGEX_SPECIAL = set("\\^$.|?*+()[]{}-")


def glob_to_regex(pattern: str) -> str:
    """A GLOB pattern as a regex body that Python `re` and PostgreSQL ARE read the same way.

    `*` any run, `?` one character, `[abc]`, `[a-z]`, `[^...]`; a `]` first in a class is a
    member. Raises ValueError with the offset of an unterminated or reversed class.
    """
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            regex, i = _glob_class(pattern, i)
            out.append(regex)
            continue
        else:
            out.append(_escape(char))
        i += 1
    return "".join(out)


def _glob_class(pattern: str, start: int) -> tuple[str, int]:
    i = start + 1
    negate = i < len(pattern) and pattern[i] == "^"
    i += negate
    members: list[str] = []
    first = True
    while i < len(pattern) and (pattern[i] != "]" or first):
        low = pattern[i]
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            high = pattern[i + 2]
            if high < low:
                raise ValueError(f"reversed range {low}-{high} in GLOB class at offset {i}")
            members.append(f"{_escape(low)}-{_escape(high)}")
            i += 3
        else:
            members.append(_escape(low))
            i += 1
        first = False
    if i >= len(pattern):
        raise ValueError(f"unterminated '[' in GLOB pattern at offset {start}")
    return "[" + "^" * negate + "".join(members) + "]", i + 1


def _escape(char: str) -> str:
    return "\\" + char if char in _REGEX_SPECIAL else char
