"""SQL functions that payload indexes are built on (created by migration 0004; 0005 made
the datetime ones fast).

A declared field gets expression indexes on what these functions extract from the value at
its path (scalars, or the elements of an array there, as filters see them):

- integer, float: the smallest and largest number (`waypoint_num_min/max`, B-tree);
- datetime: the earliest and latest RFC 3339 time as epoch seconds (`waypoint_ts_min/max`,
  B-tree); a string SQL cannot read as a time counts as -/+infinity ("may be anything");
- text: the lowercased ASCII words (`waypoint_words`, GIN) and whether any string is not
  ASCII (`waypoint_unicode`, B-tree), where Unicode tokenising is left to the exact test;
- geo: the bounding box of the geo points (`waypoint_geo_box`, GiST); a point outside the
  valid coordinate ranges widens it to everything.

The filter compiler adds a matching condition to every range, datetime range, full-text and
geo test on a plain key path (e.g. `waypoint_num_min(payload -> 'price') <= 10`): implied
by the exact test, so it never changes an answer, and served by the index when the field is
declared. The functions are IMMUTABLE, as index expressions must be, and cannot fail on any
JSON value, so they never make a write fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

DATETIME = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([01][0-9]|2[0-3]):([0-5][0-9])"
    r"(?::([0-5][0-9])(?:\.([0-9]+))?"
    r"(?: ?([Zz])| UTC| ?([+-])([01][0-9]|2[0-3])(?::?([0-5][0-9]))?)?)?)?$"
)
"""The datetime spellings SQL reads exactly; groups: Y M D h m s fraction Z sign oh om."""

WIDE_OPEN = 1000.0  # a box corner beyond every valid coordinate
_ELEMENTS = (
    "jsonb_array_elements(CASE jsonb_typeof(v) WHEN 'array' THEN v ELSE jsonb_build_array(v) END)"
)


def among(
    value: sa.ColumnElement[Any], values: Iterable[Any], element: Any = None
) -> sa.ColumnElement[bool]:
    """`value = ANY(array)` (the array of `element`s, by default of `value`'s type): one bound
    parameter however many values, where an `IN` list binds one each and PostgreSQL takes at
    most 32767 in a statement."""
    return value == sa.func.any(sa.literal(list(values), ARRAY(element or value.type)))


def sql_string(text: str) -> str:
    """A SQL string constant (standard_conforming_strings: only quotes are doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _function(
    name: str, argument: str, returns: str, body: str, strict: bool = True, language: str = "sql"
) -> str:
    """`strict=False` for a one-expression body PostgreSQL should inline into its callers: it
    inlines a STRICT function only where it can prove the body strict too."""
    return (
        f"CREATE OR REPLACE FUNCTION {name}({argument}) RETURNS {returns} LANGUAGE {language} "
        f"IMMUTABLE{' STRICT' if strict else ''} PARALLEL SAFE AS $$ {body} $$"
    )


def _extreme(aggregate: str, value: str, where: str, unknown: str = "") -> str:
    shown = f"coalesce({value}, {unknown})" if unknown else value
    return f"SELECT {aggregate}({shown}) FROM {_ELEMENTS} AS e WHERE {where}"


# The groups `regexp_match(s, DATETIME)` returns, read at fixed positions once a match without
# groups has checked the spelling: PostgreSQL's regular expressions cost ~60 us a call with
# groups to capture and ~5 without. Date, hour and minute, and seconds sit at fixed places;
# after the seconds come an optional fraction (leading digits after a dot) and the zone.
_TAIL = "substr(s, 20)"
_FRACTION = f"substr({_TAIL}, 2)"
_FRACTION_LENGTH = f"(length({_FRACTION}) - length(ltrim({_FRACTION}, '0123456789')))"
_ZONE = (
    f"ltrim(CASE WHEN left({_TAIL}, 1) = '.' "
    f"THEN substr({_TAIL}, {_FRACTION_LENGTH} + 2) ELSE {_TAIL} END, ' ')"
)
_SIGNED = f"left({_ZONE}, 1) IN ('+', '-')"
_DATETIME_PARTS = f"""
    SELECT CASE WHEN s ~ {sql_string(DATETIME)} THEN ARRAY[
        substr(s, 1, 4), substr(s, 6, 2), substr(s, 9, 2),
        CASE WHEN length(s) > 10 THEN substr(s, 12, 2) END,
        CASE WHEN length(s) > 10 THEN substr(s, 15, 2) END,
        CASE WHEN length(s) > 16 THEN substr(s, 18, 2) END,
        CASE WHEN left({_TAIL}, 1) = '.' THEN left({_FRACTION}, {_FRACTION_LENGTH}) END,
        CASE WHEN {_ZONE} IN ('Z', 'z') THEN {_ZONE} END,
        CASE WHEN {_SIGNED} THEN left({_ZONE}, 1) END,
        CASE WHEN {_SIGNED} THEN substr({_ZONE}, 2, 2) END,
        CASE WHEN {_SIGNED} AND length({_ZONE}) > 3 THEN right({_ZONE}, 2) END
    ] END
"""

# Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil), in
# integer arithmetic that cannot fail: a date the exact test rejects gets some number.
# PL/pgSQL, not SQL: waypoint_ts_min/max call it from their own queries, and a SQL function
# called there is planned again on every call, where PL/pgSQL keeps its plans.
_TS_EPOCH = """
DECLARE
    m text[] := waypoint_datetime_parts(s);
    y int;
    mo int;
    off int;
BEGIN
    IF m IS NULL THEN
        RETURN NULL;
    END IF;
    mo := m[2]::int;
    y := m[1]::int - (mo <= 2)::int;
    off := CASE m[9] WHEN '-' THEN -1 WHEN '+' THEN 1 ELSE 0 END
           * (coalesce(m[10], '0')::int * 60 + coalesce(m[11], '0')::int);
    RETURN ((y / 400) * 146097 + (y - (y / 400) * 400) * 365 + (y - (y / 400) * 400) / 4
            - (y - (y / 400) * 400) / 100 + (153 * mod(mo + 9, 12) + 2) / 5 + m[3]::int - 1
            - 719468)::numeric * 86400
           + coalesce(m[4], '0')::int * 3600 + coalesce(m[5], '0')::int * 60
           + coalesce(m[6], '0')::int + ('0.' || left(coalesce(m[7], '0'), 6))::numeric
           - off * 60;
END
"""

_WORDS = f"""
    SELECT coalesce(array_agg(DISTINCT w), '{{}}'::text[]) FROM (
        SELECT regexp_split_to_table(lower((e #>> '{{}}') COLLATE "C"), '[^a-z0-9]+') AS w
        FROM {_ELEMENTS} AS e WHERE jsonb_typeof(e) = 'string'
    ) AS words WHERE w <> ''
"""

_GEO_BOX = f"""
    SELECT CASE WHEN bool_or(NOT inside)
                THEN box(point(-{WIDE_OPEN}, -{WIDE_OPEN}), point({WIDE_OPEN}, {WIDE_OPEN}))
                ELSE box(point(min(lon), min(lat)), point(max(lon), max(lat))) END
    FROM (
        SELECT abs((e -> 'lat')::numeric) <= 90 AND abs((e -> 'lon')::numeric) <= 180 AS inside,
               CASE WHEN abs((e -> 'lat')::numeric) <= 90
                    THEN (e -> 'lat')::numeric::float8 END AS lat,
               CASE WHEN abs((e -> 'lon')::numeric) <= 180
                    THEN (e -> 'lon')::numeric::float8 END AS lon
        FROM {_ELEMENTS} AS e
        WHERE jsonb_typeof(e -> 'lat') = 'number' AND jsonb_typeof(e -> 'lon') = 'number'
    ) AS points
"""

_IS_NUMBER = "jsonb_typeof(e) = 'number'"
_IS_STRING = "jsonb_typeof(e) = 'string'"
_EPOCH = "waypoint_ts_epoch(e #>> '{}')"

CREATE = [
    _function("waypoint_num_min", "v jsonb", "numeric", _extreme("min", "e::numeric", _IS_NUMBER)),
    _function("waypoint_num_max", "v jsonb", "numeric", _extreme("max", "e::numeric", _IS_NUMBER)),
    _function("waypoint_datetime_parts", "s text", "text[]", _DATETIME_PARTS, strict=False),
    _function("waypoint_ts_epoch", "s text", "numeric", _TS_EPOCH, language="plpgsql"),
    _function(
        "waypoint_ts_min", "v jsonb", "numeric",
        _extreme("min", _EPOCH, _IS_STRING, "'-Infinity'::numeric"),
    ),
    _function(
        "waypoint_ts_max", "v jsonb", "numeric",
        _extreme("max", _EPOCH, _IS_STRING, "'Infinity'::numeric"),
    ),
    _function("waypoint_words", "v jsonb", "text[]", _WORDS),
    _function(
        "waypoint_unicode", "v jsonb", "boolean",
        "SELECT coalesce(bool_or(octet_length(e #>> '{}') <> char_length(e #>> '{}')), false) "
        f"FROM {_ELEMENTS} AS e WHERE {_IS_STRING}",
    ),
    _function("waypoint_geo_box", "v jsonb", "box", _GEO_BOX),
]  # fmt: skip

DROP = [  # CASCADE: the indexes built on them go too
    f"DROP FUNCTION IF EXISTS {name} CASCADE"
    for name in (
        "waypoint_num_min(jsonb)", "waypoint_num_max(jsonb)", "waypoint_ts_min(jsonb)",
        "waypoint_ts_max(jsonb)", "waypoint_ts_epoch(text)", "waypoint_datetime_parts(text)",
        "waypoint_words(jsonb)", "waypoint_unicode(jsonb)", "waypoint_geo_box(jsonb)",
    )
]  # fmt: skip


def constant_chain_sql(keys: Sequence[str]) -> str | None:
    """`payload -> 'a' -> 'b'`, keys as SQL string constants: what an index is built on and
    what the compiler writes for it to match. None for keys SQL text cannot carry."""
    if not keys or any("\x00" in key for key in keys):
        return None
    return "payload" + "".join(" -> " + sql_string(key) for key in keys)


def attach(metadata: sa.MetaData) -> None:
    """Create the functions with `metadata.create_all` too (test databases built without
    migrations)."""
    for statement in CREATE:
        sa.event.listen(metadata, "before_create", sa.DDL(statement))
