"""Property test: SQL, the compiled predicate, the batch mask and the reference evaluator agree.

Every example inserts a small random point set into a real PostgreSQL table (built from
`app.db.tables.metadata`) and runs a few random filters of both dialects through all four back
ends. SQL rows flagged by `SqlFilter.recheck` are confirmed with the predicate, as callers do.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.db.migrate import install_compat
from app.db.tables import collections, metadata, namespaces, point_vectors, points
from app.filters import (
    Node,
    Point,
    compile_mask,
    compile_predicate,
    compile_sql,
    matches,
    parse_qdrant_filter,
    parse_upstash_filter,
)
from tests import test_filters_strategies as gen

# every plain path the generators and pinned cases use, as if declared: the SQL then carries
# the implied tests that serve expression indexes, which must never change an answer
INDEXED = frozenset(
    [*gen.TOP_KEYS, *(f"{a}.{b}" for a in gen.TOP_KEYS for b in gen.INNER_KEYS), "t", "d", "g"]
)


class Database:
    """A database of our own on the test server, with the schema and one namespace."""

    def __init__(self, server_url: str) -> None:
        self.name = f"filters_test_{uuid.uuid4().hex[:12]}"
        self.server = make_url(server_url).set(drivername="postgresql+asyncpg")
        self.runner = asyncio.Runner()
        self.engine: AsyncEngine | None = None
        self.namespace_id = 0

    def open(self) -> None:
        self.runner.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        self.engine = create_async_engine(self.server.set(database=self.name))
        self.runner.run(self._schema())

    def close(self) -> None:
        if self.engine is not None:
            self.runner.run(self.engine.dispose())
        self.runner.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.runner.close()

    async def _admin(self, statement: str) -> None:
        engine = create_async_engine(self.server, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
        await engine.dispose()

    async def _schema(self) -> None:
        assert self.engine is not None
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.run_sync(install_compat)  # pg_input_is_valid before PostgreSQL 16
            cid = await conn.scalar(
                sa.insert(collections).values(name="c", config={}).returning(collections.c.id)
            )
            self.namespace_id = await conn.scalar(
                sa.insert(namespaces).values(collection_id=cid, name="").returning(namespaces.c.id)
            )

    def sql_matches(self, points_: list[Point], filters: list[Node]) -> list[set[Any]]:
        return self.runner.run(self._sql_matches(points_, filters))

    async def _sql_matches(self, points_: list[Point], filters: list[Node]) -> list[set[Any]]:
        assert self.engine is not None
        by_text = {_id_text(p.id): p for p in points_}
        results = []
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(points))
            await conn.execute(
                sa.insert(points), [self._row(p, seq) for seq, p in enumerate(points_)]
            )
            vectors = [self._vector(p, name) for p in points_ for name in p.vector_names]
            if vectors:
                await conn.execute(sa.insert(point_vectors), vectors)
            for node in filters:
                compiled = compile_sql(node, indexed=INDEXED)  # the index hints too
                recheck = compiled.recheck if compiled.recheck is not None else sa.false()
                query = sa.select(points.c.point_id, recheck).where(
                    points.c.namespace_id == self.namespace_id, compiled.where
                )
                rows = (await conn.execute(query)).all()
                predicate = compile_predicate(node)
                results.append(
                    {by_text[t].id for t, unsure in rows if not unsure or predicate(by_text[t])}
                )
            await conn.rollback()
        return results

    def _row(self, point: Point, seq: int) -> dict[str, Any]:
        kind = 0 if isinstance(point.id, int) else 1
        return {
            "namespace_id": self.namespace_id,
            "point_id": _id_text(point.id),
            "id_kind": kind,
            "id_number": point.id - 2**63 if kind == 0 else None,
            "seq": seq,
            "payload": point.payload,
        }

    def _vector(self, point: Point, name: str) -> dict[str, Any]:
        return {
            "namespace_id": self.namespace_id,
            "point_id": _id_text(point.id),
            "name": name,
            "seq": 0,
            "vector": b"",
        }


def _id_text(point_id: Any) -> str:
    return str(point_id)


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    """A database of ours on `$TEST_DATABASE_URL`, else on an embedded server of our own.

    The embedded server lives outside pytest's temp root: a concurrent pytest session resets
    that root to mode 0700, which locks the server's `postgres` user out of its own files.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        import pgserver

        folder = tempfile.mkdtemp(prefix="filters_pg_")
        _servers.append(pgserver.get_server(folder, cleanup_mode="delete"))
        url = f"postgresql://postgres@/postgres?host={folder}"
    db = Database(url)
    db.open()
    yield db
    db.close()


_servers: list[object] = []  # keeps the embedded server running until the session ends


def random_points(r: random.Random) -> list[Point]:
    chosen: dict[Any, Point] = {}
    for _ in range(r.randint(1, 12)):
        pid = gen.point_id(r)
        chosen[pid] = Point(pid, gen.payload(r), gen.vector_names(r))
    return list(chosen.values())


def random_filters(r: random.Random) -> list[Node]:
    nodes = []
    for _ in range(6):
        if r.random() < 0.55:
            node = parse_qdrant_filter(gen.qdrant_filter(r))
        else:
            node = parse_upstash_filter(gen.upstash_filter(r))
        if node is not None:
            nodes.append(node)
    return nodes


@settings(
    max_examples=int(os.environ.get("FILTERS_EXAMPLES", "120")),
    deadline=None,
    # No shrinking: every step is a database round trip, and the failure message already
    # names the filter and the points on which the back ends differ.
    phases=[Phase.explicit, Phase.generate],
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.randoms(use_true_random=False))
def test_all_back_ends_agree(database: Database, r: random.Random) -> None:
    points_ = random_points(r)
    filters = random_filters(r)
    from_sql = database.sql_matches(points_, filters)
    ids = [p.id for p in points_]
    payloads = [p.payload for p in points_]
    names = [p.vector_names for p in points_]
    for node, sql_ids in zip(filters, from_sql, strict=True):
        reference = {p.id for p in points_ if matches(node, p)}
        predicate = compile_predicate(node)
        assert {p.id for p in points_ if predicate(p)} == reference, node
        mask = compile_mask(node, ids, payloads, names)
        assert {ids[i] for i in np.flatnonzero(mask)} == reference, node
        assert sql_ids == reference, (node, [p for p in points_ if p.id in sql_ids ^ reference])


# --- pinned cases: each rule the random test might only rarely hit --------------------------

CASES: list[tuple[dict[str, Any] | str, dict[str, Any] | None, bool]] = [
    # Qdrant equality is type-strict and looks inside a final array, one level only
    ({"must": {"key": "a", "match": {"value": 1}}}, {"a": 1}, True),
    ({"must": {"key": "a", "match": {"value": 1}}}, {"a": 1.0}, False),
    ({"must": {"key": "a", "match": {"value": 1}}}, {"a": True}, False),
    ({"must": {"key": "a", "match": {"value": True}}}, {"a": 1}, False),
    ({"must": {"key": "a", "match": {"value": 1}}}, {"a": [2.0, 1]}, True),
    ({"must": {"key": "a", "match": {"value": 1}}}, {"a": [[1]]}, False),
    ({"must": {"key": "a", "match": {"any": [1, 2]}}}, {"a": 2.0}, False),
    ({"must": {"key": "a.b", "match": {"value": "x"}}}, {"a": [{"b": "x"}]}, False),
    ({"must": {"key": "a[].b", "match": {"value": "x"}}}, {"a": [{"b": "x"}]}, True),
    ({"must": {"key": "a[0]", "match": {"value": "x"}}}, {"a": "x"}, False),
    ({"must": {"key": '"k.1"', "match": {"value": "x"}}}, {"k.1": "x"}, True),
    # except never matches null or missing, and matches any other value
    ({"must": {"key": "a", "match": {"except": [1]}}}, {"a": None}, False),
    ({"must": {"key": "a", "match": {"except": [1]}}}, {}, False),
    ({"must": {"key": "a", "match": {"except": [1]}}}, {"a": {"x": 1}}, True),
    ({"must": {"key": "a", "match": {"except": [1]}}}, {"a": [1, 2]}, True),
    ({"must": {"key": "a", "match": {"except": [1]}}}, {"a": [1]}, False),
    # full text: alphanumeric runs, lowercased; phrases are consecutive tokens
    ({"must": {"key": "s", "match": {"text": "hello world"}}}, {"s": "World, HELLO!"}, True),
    ({"must": {"key": "s", "match": {"text": "hello"}}}, {"s": "hello2 world"}, False),
    ({"must": {"key": "s", "match": {"text": "hello"}}}, {"s": "x_hello"}, True),
    ({"must": {"key": "s", "match": {"text": "hello"}}}, {"s": "2hello"}, False),
    ({"must": {"key": "s", "match": {"phrase": "hello world"}}}, {"s": "world hello"}, False),
    ({"must": {"key": "s", "match": {"phrase": "hello world"}}}, {"s": "a hello -- world"}, True),
    ({"must": {"key": "s", "match": {"text_any": "nope world"}}}, {"s": "worlds world"}, True),
    ({"must": {"key": "s", "match": {"text": ""}}}, {"s": "anything"}, False),
    ({"must": {"key": "s", "match": {"text": "héllo"}}}, {"s": "HÉLLO there"}, True),
    ({"must_not": {"key": "s", "match": {"text": "hello"}}}, {"s": "Ünïcode hello"}, False),
    ({"must": {"key": "s", "match": {"prefix": "he"}}}, {"s": ["x", "hex"]}, True),
    # range ignores booleans and strings
    ({"must": {"key": "n", "range": {"gt": 0}}}, {"n": True}, False),
    ({"must": {"key": "n", "range": {"gt": 0}}}, {"n": "2"}, False),
    ({"must": {"key": "n", "range": {"gt": 1, "lt": 3}}}, {"n": [0, 5]}, False),
    ({"must": {"key": "n", "range": {"gte": 0.1}}}, {"n": 0.1}, True),
    # values_count, is_empty, is_null
    ({"must": {"key": "t", "values_count": {"lt": 1}}}, {}, True),
    ({"must": {"key": "t", "values_count": {"lt": 1}}}, {"t": None}, True),
    ({"must": {"key": "t", "values_count": {"gte": 2}}}, {"t": [1, 2]}, True),
    ({"must": {"key": "t[]", "values_count": {"gte": 2}}}, {"t": [[1, 2]]}, True),
    ({"must": {"is_empty": {"key": "t"}}}, {"t": []}, True),
    ({"must": {"is_empty": {"key": "t"}}}, {"t": [None]}, False),
    ({"must": {"is_empty": {"key": "t"}}}, None, True),
    ({"must": {"key": "t", "is_empty": False}}, {"t": 0}, True),
    ({"must": {"is_null": {"key": "t"}}}, {"t": [1, None]}, True),
    ({"must": {"is_null": {"key": "t"}}}, {"t": [[None]]}, False),
    ({"must": {"is_null": {"key": "t"}}}, {}, False),
    # nested: one element must satisfy the whole sub-filter; elements are not points
    (_nested := {"must": {"nested": {"key": "arr", "filter": {"must": [
        {"key": "a", "match": {"value": 1}}, {"key": "b", "match": {"value": 2}}]}}}},
     {"arr": [{"a": 1}, {"b": 2}]}, False),
    (_nested, {"arr": [{"a": 1, "b": 2}]}, True),
    ({"must": {"nested": {"key": "arr", "filter": {"must": {"has_vector": ""}}}}},
     {"arr": [{}]}, False),
    ({"must": {"nested": {"key": "arr[]", "filter": {"must_not": {"has_id": [1]}}}}},
     {"arr": [{}]}, True),
    # datetimes: compared in UTC; dates are midnight; invalid dates never match
    (_since := {"must": {"key": "w", "range": {"gte": "2023-06-01T00:00:00Z"}}},
     {"w": "2023-06-01T02:00:00+02:00"}, True),
    (_since, {"w": "2023-06-01T01:59:59.9999999+02:00"}, False),
    (_since, {"w": "2023-06-01"}, True),
    (_since, {"w": "2023-06-31T00:00:00Z"}, False),
    (_since, {"w": "2023-6-02 00:00"}, True),
    (_since, {"w": "2023-07-01 10:00:00 UTC"}, True),
    ({"must_not": _since}, {"w": "2023-6-02 00:00"}, False),
    # geo
    (_berlin := {"must": {"key": "g", "geo_radius": {
        "center": {"lat": 52.52, "lon": 13.405}, "radius": 1_000_000}}},
     {"g": {"lat": 48.8566, "lon": 2.3522}}, True),
    (_berlin, {"g": {"lat": 40.4168, "lon": -3.7038}}, False),
    (_berlin, {"g": {"lat": "48.8", "lon": 2.35}}, False),
    (_box := {"must": {"key": "g", "geo_bounding_box": {
        "top_left": {"lat": 10, "lon": 170}, "bottom_right": {"lat": -10, "lon": -170}}}},
     {"g": {"lat": 0, "lon": 175}}, True),
    (_box, {"g": {"lat": 0, "lon": 0}}, False),
    (_square := {"must": {"key": "g", "geo_polygon": {"exterior": {"points": [
        {"lat": 0, "lon": 0}, {"lat": 0, "lon": 10}, {"lat": 10, "lon": 10},
        {"lat": 10, "lon": 0}, {"lat": 0, "lon": 0}]}}}},
     {"g": {"lat": 5, "lon": 5}}, True),
    (_square, {"g": {"lat": 0, "lon": 5}}, False),
    (_square, {"g": [{"lat": 50, "lon": 5}, {"lat": 1, "lon": 1}]}, True),
    # Upstash: loose equality, booleans as 1/0, every operator false on missing or mistyped
    ("a = 1", {"a": True}, True),
    ("a = true", {"a": 1.0}, True),
    ("a = 1", {"a": [1]}, False),
    ("a != 'x'", {"a": 5}, False),
    ("a != 'x'", {}, False),
    ("a != 1", {"a": 2}, True),
    ("a IN ('x', 1)", {"a": True}, True),
    ("a NOT IN ('x', 'y')", {"a": "z"}, True),
    ("a NOT IN ('x', 'y')", {"a": 3}, False),
    ("a = 'it\\'s'", {"a": "it's"}, True),
    ("n > 1", {"n": True}, False),
    ("n >= 1e0 AND n < 1.5", {"n": 1}, True),
    ("tags[#-1] = 'z'", {"tags": ["x", "z"]}, True),
    ("tags[0] = 'x'", {"tags": "x"}, False),
    ("tags CONTAINS 'x'", {"tags": ["y", "x"]}, True),
    ("tags CONTAINS 1", {"tags": [True]}, True),
    ("tags NOT CONTAINS 'x'", {"tags": "x"}, False),
    ("tags NOT CONTAINS 'x'", {"tags": ["y"]}, True),
    ("s GLOB 'h*o'", {"s": "hello"}, True),
    ("s GLOB '[^h]*'", {"s": "hello"}, False),
    ("s GLOB 'H*'", {"s": "hello"}, False),
    ("s NOT GLOB 'x*'", {"s": 5}, False),
    ("HAS FIELD a", {"a": None}, True),
    ("HAS NOT FIELD a.b", {"a": {"c": 1}}, True),
    ("a.b = 1 OR a = 2 AND b = 3", {"a": {"b": 1}}, True),
    ("(a.b = 1 OR a = 2) AND b = 3", {"a": {"b": 1}}, False),
]  # fmt: skip


def _field(key: str, **condition: Any) -> dict[str, Any]:
    return {"must": {"key": key, **condition}}


def _radius(lat: float, lon: float, metres: float) -> dict[str, Any]:
    return {"geo_radius": {"center": {"lat": lat, "lon": lon}, "radius": metres}}


_TRIANGLE = [{"lat": 0, "lon": 0}, {"lat": 0, "lon": 2}, {"lat": 2, "lon": 2}, {"lat": 0, "lon": 0}]
_INSIDE = {"lat": 0.5, "lon": 1.5}
_WRAP = {"top_left": {"lat": 1, "lon": 170}, "bottom_right": {"lat": -1, "lon": -170}}
_NOON = "2024-01-01T05:30:00Z"

# The index hints (app.db.functions) never drop a match: Unicode lowercasing that lands in
# ASCII (the Kelvin sign is a K), times SQL cannot read, offsets, ranges over arrays, points
# beyond valid ranges, caps that hold a pole or cross the antimeridian.
CASES += [
    (_field("t", match={"text": "key"}), {"t": "\u212aey"}, True),
    (_field("t", match={"text_any": "key zzz"}), {"t": ["x", "\u212aEY"]}, True),
    (_field("t", match={"phrase": "a b"}), {"t": "A-B c"}, True),
    (_field("t", match={"text": "a c"}), {"t": "A-B"}, False),
    (_field("d", range={"gt": "2024-01-01T00:00:00Z"}), {"d": " 2024-01-02T10:00:00Z"}, True),
    (_field("d", range={"lt": _NOON}), {"d": ["2025-01-01", "2023-06-01T10:00:00+02:00"]}, True),
    (_field("d", range={"gte": _NOON}), {"d": "2024-01-01T11:00:00+05:30"}, True),
    (_field("d", range={"gt": _NOON}), {"d": "2024-01-01T11:00:00+05:30"}, False),
    (_field("n", range={"gt": 5, "lt": 7}), {"n": [1, 6.5, 100]}, True),
    (_field("n", range={"gt": 5, "lt": 7}), {"n": [1, 100]}, False),
    (_field("g", **_radius(89.9, 0, 50_000)), {"g": {"lat": 89.9, "lon": 180}}, True),
    (_field("g", **_radius(0, 179.9, 50_000)), {"g": [{"lat": 0, "lon": -179.9}]}, True),
    (_field("g", **_radius(10, 10, 1000)), {"g": {"lat": 10, "lon": 10.009}}, True),
    (_field("g", **_radius(0, 0, 1e9)), {"g": {"lat": 500, "lon": 0}}, True),
    (_field("g", geo_bounding_box=_WRAP), {"g": {"lat": 0, "lon": 179}}, True),
    (_field("g", geo_polygon={"exterior": {"points": _TRIANGLE}}), {"g": _INSIDE}, True),
]


def _parse(spec: dict[str, Any] | str) -> Node:
    node = parse_upstash_filter(spec) if isinstance(spec, str) else parse_qdrant_filter(spec)
    assert node is not None
    return node


def test_pinned_cases(database: Database) -> None:
    """Every back end gives the documented answer on each pinned case."""
    subjects = [Point(i, payload, frozenset({""})) for i, (_, payload, _) in enumerate(CASES)]
    nodes = [_parse(spec) for spec, _, _ in CASES]
    from_sql = database.sql_matches(subjects, nodes)
    wrong = []
    for (spec, _, expected), node, subject, sql_ids in zip(
        CASES, nodes, subjects, from_sql, strict=True
    ):
        answers = {
            "reference": matches(node, subject),
            "predicate": compile_predicate(node)(subject),
            "mask": bool(compile_mask(node, [subject.id], [subject.payload], [{""}])[0]),
            "sql": subject.id in sql_ids,
        }
        wrong += [(spec, subject.payload, name) for name, got in answers.items() if got != expected]
    assert not wrong
