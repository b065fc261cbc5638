"""Payload indexes: declared over HTTP, backed by a real PostgreSQL index that the compiled
filters use (EXPLAIN), reported in collection info, dropped again."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from decimal import Decimal

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from qdrant_client import QdrantClient, models
from sqlalchemy.dialects import postgresql

from app.db.tables import points
from app.filters import compile_sql, parse_qdrant_filter


@pytest.fixture(scope="module")
def client(server) -> QdrantClient:
    qdrant = QdrantClient(url=server.url, prefer_grpc=False, timeout=60)
    qdrant.create_collection(
        "indexed", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
    )
    qdrant.upload_points(
        "indexed",
        [
            models.PointStruct(id=i, vector=[1.0, i / 5000], payload={"cat": f"c{i % 500}"})
            for i in range(5000)
        ],
        wait=True,
    )
    return qdrant


def explain(database_url: str, where: sa.ColumnElement[bool]) -> str:
    stmt = sa.select(points.c.point_id).where(where)
    text = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))

    async def run() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("ANALYZE points")
            await conn.execute("SET enable_seqscan = off")  # a tiny table: show it *can* be used
            rows = await conn.fetch("EXPLAIN " + text)
            return "\n".join(r[0] for r in rows)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_keyword_index_is_a_real_index_the_filter_uses(client, server, database_url) -> None:
    where = compile_sql(
        parse_qdrant_filter({"must": [{"key": "cat", "match": {"value": "c7"}}]})
    ).where
    assert "ix_points_payload_gin" not in explain(database_url, where)

    client.create_payload_index("indexed", "cat", models.PayloadSchemaType.KEYWORD, wait=True)
    assert "ix_points_payload_gin" in explain(database_url, where)
    info = client.get_collection("indexed")
    assert info.payload_schema["cat"].data_type == models.PayloadSchemaType.KEYWORD
    assert info.payload_schema["cat"].points == 5000
    found = client.count(
        "indexed",
        count_filter=models.Filter(
            must=[models.FieldCondition(key="cat", match=models.MatchValue(value="c7"))]
        ),
    )
    assert found.count == 10

    client.delete_payload_index("indexed", "cat", wait=True)
    assert client.get_collection("indexed").payload_schema == {}
    assert "ix_points_payload_gin" not in explain(database_url, where)


def test_bad_schemas_are_rejected(client, server) -> None:
    response = httpx.put(
        f"{server.url}/collections/indexed/index",
        json={"field_name": "cat", "field_schema": "nonsense"},
    )
    assert response.status_code == 400
    assert "field_schema" in response.json()["status"]["error"]


def test_numeric_index_serves_ranges(client, server, database_url) -> None:
    """Integer and float fields get min/max expression indexes that range filters use."""
    prices = [i * 0.5 for i in range(3000)]
    client.create_collection(
        "priced", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
    )
    client.upload_points(
        "priced",
        [
            models.PointStruct(
                id=i,
                vector=[1.0, 0.0],
                # arrays count by any element, as in Qdrant; strings never match a range
                payload={"shop": {"price": [price, 9999] if i % 7 == 0 else price}}
                if i % 11
                else {"shop": {"price": str(price)}},
            )
            for i, price in enumerate(prices)
        ],
        wait=True,
    )
    spec = {"must": [{"key": "shop.price", "range": {"gte": 100, "lt": 110.5}}]}
    where = compile_sql(parse_qdrant_filter(spec), indexed=frozenset({"shop.price"})).where
    assert "ix_points_num_" not in explain(database_url, where)

    client.create_payload_index("priced", "shop.price", models.PayloadSchemaType.FLOAT, wait=True)
    plan = explain(database_url, where)
    assert "ix_points_num_" in plan and "_min" in plan and "_max" in plan, plan
    expected = sum(1 for i, p in enumerate(prices) if i % 11 and 100 <= p < 110.5)
    flt = models.Filter.model_validate(spec)
    assert client.count("priced", count_filter=flt).count == expected
    above = models.Filter.model_validate(
        {"must": [{"key": "shop.price", "range": {"gt": 1400}}]}
    )  # the arrays' 9999 matches too
    expected_above = sum(1 for i, p in enumerate(prices) if i % 11 and (p > 1400 or i % 7 == 0))
    assert client.count("priced", count_filter=above).count == expected_above

    client.delete_payload_index("priced", "shop.price", wait=True)
    assert "ix_points_num_" not in explain(database_url, where)
    assert client.count("priced", count_filter=flt).count == expected


def test_datetime_text_and_geo_indexes_serve_their_filters(client, database_url) -> None:
    """Each declared type gets PostgreSQL indexes that its conditions' compiled SQL uses,
    and counts stay exact (checked against the reference evaluator)."""
    from datetime import UTC, datetime, timedelta

    from app.filters import Point, matches

    words = ["red", "green", "blue", "fast", "slow", "Ünïcode"]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    payloads = [
        {
            "when": (start + timedelta(hours=7 * i)).isoformat(),
            "bio": f"{words[i % 6]} {words[(i * 7) % 6]} {i}",
            "loc": {"lat": -60 + (i % 120), "lon": -170 + (i * 13) % 340},
        }
        for i in range(1200)
    ]
    client.create_collection(
        "typed", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
    )
    client.upload_points(
        "typed",
        [models.PointStruct(id=i, vector=[1.0, 0.0], payload=p) for i, p in enumerate(payloads)],
        wait=True,
    )
    cases = {
        ("when", models.PayloadSchemaType.DATETIME, "ix_points_ts_"): {
            "key": "when",
            "range": {"gte": "2024-02-01T00:00:00Z", "lt": "2024-02-03T00:00:00+02:00"},
        },
        ("bio", models.PayloadSchemaType.TEXT, "ix_points_text_"): {
            "key": "bio",
            "match": {"text": "fast"},
        },
        ("loc", models.PayloadSchemaType.GEO, "ix_points_geo_"): {
            "key": "loc",
            "geo_radius": {"center": {"lat": 10, "lon": 20}, "radius": 400_000},
        },
    }
    for (field, schema, index), condition in cases.items():
        spec = {"must": [condition]}
        node = parse_qdrant_filter(spec)
        where = compile_sql(node, indexed=frozenset({field})).where
        assert index not in explain(database_url, where)
        client.create_payload_index("typed", field, schema, wait=True)
        assert index in explain(database_url, where), (field, explain(database_url, where))
        expected = sum(matches(node, Point(i, p, frozenset())) for i, p in enumerate(payloads))
        assert expected > 0
        flt = models.Filter.model_validate(spec)
        assert client.count("typed", count_filter=flt).count == expected
        client.delete_payload_index("typed", field, wait=True)
        assert index not in explain(database_url, where)


def test_expression_hints_only_for_declared_fields() -> None:
    """Where no index serves them the implied tests cost time per row, so the compiled SQL
    carries them only for declared fields (equality's GIN containment test is always there)."""
    node = parse_qdrant_filter({"must": [{"key": "when", "range": {"gt": "2024-01-01T00:00:00Z"}}]})
    plain = str(compile_sql(node).where.compile(dialect=postgresql.dialect()))
    assert "waypoint_ts" not in plain
    declared = compile_sql(node, indexed=frozenset({"when"})).where
    assert "waypoint_ts_max" in str(declared.compile(dialect=postgresql.dialect()))


@pytest.mark.parametrize(
    "spec",
    [
        {"must_not": [{"key": "when", "range": {"gt": "2024-01-01T00:00:00Z"}}]},
        {"must_not": [{"key": "cat", "match": {"value": "c7"}}]},
        {
            "min_should": {
                "conditions": [
                    {"key": "when", "range": {"gt": "2024-01-01T00:00:00Z"}},
                    {"key": "cat", "match": {"value": "c7"}},
                ],
                "min_count": 1,
            }
        },
    ],
    ids=["must_not range", "must_not match", "min_should"],
)
def test_no_index_hints_where_no_index_can_serve(spec: dict) -> None:
    """Under NOT or a min_should count no index serves a hint: it would only cost time per
    row (a datetime hint ran a regular expression a dozen times per row: 1,000 points took
    10 s to count). The exact tests stay."""
    node = parse_qdrant_filter(spec)
    sql = str(compile_sql(node, indexed=frozenset({"when", "cat"})).where.compile())
    assert "waypoint_ts" not in sql and "@>" not in sql
    assert "jsonb_typeof" in sql


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """The test database with every migration applied (the functions included)."""
    from app.db.migrate import upgrade_async

    asyncio.run(upgrade_async(database_url))
    return database_url


# waypoint_ts_epoch as migration 0004 made it: the reference its faster successor must match
ORIGINAL_EPOCH = """
    SELECT ((y / 400) * 146097 + (y - (y / 400) * 400) * 365 + (y - (y / 400) * 400) / 4
            - (y - (y / 400) * 400) / 100 + (153 * mod(mo + 9, 12) + 2) / 5 + d - 1
            - 719468)::numeric * 86400
           + h * 3600 + mi * 60 + sec + frac - off * 60
    FROM (
        SELECT m[1]::int - (m[2]::int <= 2)::int AS y, m[2]::int AS mo, m[3]::int AS d,
               coalesce(m[4], '0')::int AS h, coalesce(m[5], '0')::int AS mi,
               coalesce(m[6], '0')::int AS sec,
               ('0.' || left(coalesce(m[7], '0'), 6))::numeric AS frac,
               CASE m[9] WHEN '-' THEN -1 WHEN '+' THEN 1 ELSE 0 END
                   * (coalesce(m[10], '0')::int * 60 + coalesce(m[11], '0')::int) AS off
        FROM (SELECT regexp_match(s, $1) AS m) AS matched
        WHERE m IS NOT NULL
    ) AS parts
"""


def test_datetime_epochs_are_what_they_were(migrated_url: str) -> None:
    """The faster waypoint_ts_epoch (migration 0005) gives every spelling the number 0004's
    gave, so the indexes built on waypoint_ts_min/max stay valid; the migrations installed
    the current definitions."""
    from app.db.functions import _DATETIME_PARTS, _TS_EPOCH, DATETIME

    spellings = [*datetime_spellings(), "2024-02-03T04:05:06.5+01:00", "1969-12-31T23:59:59.9Z"]
    rows = fetch(
        migrated_url,
        f"SELECT s, waypoint_ts_epoch(s) AS epoch, ({ORIGINAL_EPOCH}) AS original "
        "FROM unnest($2::text[]) AS s",
        DATETIME,
        spellings,
    )
    sources = fetch(
        migrated_url, "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'waypoint_%'"
    )
    assert [(r["s"], r["epoch"]) for r in rows] == [(r["s"], r["original"]) for r in rows]
    epochs = {r["s"]: r["epoch"] for r in rows}
    assert epochs["2024-02-03T04:05:06.5+01:00"] == 1706929506.5  # 03:05:06.5 UTC
    assert epochs["1969-12-31T23:59:59.9Z"] == Decimal("-0.1")
    source = {r["proname"]: r["prosrc"].strip() for r in sources}
    assert source["waypoint_ts_epoch"] == _TS_EPOCH.strip()
    assert source["waypoint_datetime_parts"] == _DATETIME_PARTS.strip()


def test_datetime_parts_match_once_and_inline(migrated_url: str) -> None:
    """waypoint_datetime_parts is inlined into the query that calls it (a STRICT one was
    not), and matches its expression once, without groups."""
    from app.db.functions import DATETIME, sql_string

    plan = fetch(
        migrated_url,
        "EXPLAIN (VERBOSE) SELECT waypoint_datetime_parts(s) "
        "FROM (VALUES ('2024-02-03'), ('x')) AS strings(s)",
    )
    plan_text = "\n".join(row[0] for row in plan)
    assert "waypoint_datetime_parts" not in plan_text, plan_text  # inlined
    assert plan_text.count(sql_string(DATETIME)) == 1, plan_text
    assert "regexp_match" not in plan_text


def datetime_spellings() -> list[str]:
    """Right and wrong spellings of every part: date, time, seconds, fraction, zone."""
    dates = ["2024-01-05", "0000-12-31", "2024-13-45", "2024-1-05", "x024-01-05"]
    times = ["", "T10:00", "t23:59", " 10:00", "T24:00", "T10:00:30", "T10:00:60"]
    times += ["T10:00:30.5", "T10:00:30.123456789", "T10:00:30.", "T10:00:30.12a"]
    zones = ["", "Z", "z", " Z", " UTC", "UTC", "+01", "-0130", "+01:30", " +05:45", " -23:59"]
    zones += ["+24", "+01:60", "+1", " ", "  Z", "+01:3", "Zz", "+0130x"]
    spellings = {d + t + z for d, t, z in itertools.product(dates, times, zones)}
    return sorted(spellings | {"", " ", "2024", "2024-01-05T", "2024-01-05T10", "2024-01-05 UTC"})


def test_datetime_parts_are_the_groups_of_the_full_match(migrated_url: str) -> None:
    """waypoint_datetime_parts reads the groups at fixed places after a match without groups
    (PostgreSQL's regular expressions cost ~60 us a call with groups, ~5 without): it must
    give what `regexp_match` with the groups gives, NULLs and all."""
    from app.db.functions import DATETIME

    spellings = datetime_spellings()
    rows = fetch(
        migrated_url,
        "SELECT s, waypoint_datetime_parts(s) AS parts, regexp_match(s, $1) AS groups "
        "FROM unnest($2::text[]) AS s",
        DATETIME,
        spellings,
    )
    assert len(rows) == len(spellings)
    assert sum(row["groups"] is not None for row in rows) > 100  # many right spellings
    assert [(r["s"], r["parts"]) for r in rows] == [(r["s"], r["groups"]) for r in rows]


def fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def point_indexes(database_url: str) -> set[str]:
    rows = fetch(database_url, "SELECT indexname FROM pg_indexes WHERE tablename = 'points'")
    return {row["indexname"] for row in rows}


def test_deleting_a_collection_drops_the_indexes_only_it_used(client, database_url) -> None:
    """Expression indexes are shared by every collection declaring the field: the last
    collection to go takes them along, instead of leaving every later write to maintain them."""
    stock = "ix_points_num_" + hashlib.sha256(b"stock").hexdigest()[:16]
    for name in ("stores_a", "stores_b"):
        client.create_collection(
            name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
        )
        client.create_payload_index(name, "stock", models.PayloadSchemaType.INTEGER, wait=True)
    assert {f"{stock}_min", f"{stock}_max"} <= point_indexes(database_url)

    client.delete_collection("stores_a")
    assert {f"{stock}_min", f"{stock}_max"} <= point_indexes(database_url)  # stores_b's still
    client.delete_collection("stores_b")
    assert not {f"{stock}_min", f"{stock}_max"} & point_indexes(database_url)
