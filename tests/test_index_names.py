"""Payload index names that are hostile to SQL or to URLs.

Field names reach PostgreSQL DDL (expression indexes over the payload), so they must be
quoted by PostgreSQL's rules whatever the database's settings: this module's database has
`standard_conforming_strings` off, under which a backslash escapes inside '…'. Names with
`/` must be deletable the way qdrant-client sends them (percent-encoded) and raw.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from qdrant_client import QdrantClient
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from app.db.tables import points
from app.filters import compile_sql, parse_qdrant_filter
from tests.conftest import LiveServer, fetch_row

HOSTILE = ["k\\", "k'", "k\\'", "'); DROP TABLE points; --", 'a"b', "$$x", "k :v", "p%s"]
SLASHED = ["a/b", "x/y/z"]
# Each schema: a payload value, a filter condition matching it, the expression indexes' family.
SCHEMAS: dict[str, tuple[Any, dict[str, Any], str | None]] = {
    "keyword": ("v\\'", {"match": {"value": "v\\'"}}, None),
    "integer": (7, {"range": {"gte": 7, "lte": 7}}, "num"),
    "text": ("hello world", {"match": {"text": "hello"}}, "text"),
}


@pytest.fixture(scope="module")
def server(database_url: str, server_factory) -> LiveServer:
    """A server on a database whose string literals treat backslashes as escapes."""
    name = make_url(database_url).database
    fetch_row(database_url, f'ALTER DATABASE "{name}" SET standard_conforming_strings = off')
    assert fetch_row(database_url, "SHOW standard_conforming_strings")[0] == "off"
    return server_factory()


def _collection(server: LiveServer, name: str, payloads: list[dict[str, Any]]) -> str:
    url = f"{server.url}/collections/{name}"
    body = {"vectors": {"size": 2, "distance": "Dot"}}
    assert httpx.put(url, json=body, timeout=30).status_code == 200
    batch = [{"id": i, "vector": [1.0, 0.5], "payload": p} for i, p in enumerate(payloads)]
    response = httpx.put(f"{url}/points?wait=true", json={"points": batch}, timeout=30)
    assert response.status_code == 200, response.text
    return url


def _schema(url: str) -> dict[str, Any]:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["result"]["payload_schema"]


def _create(url: str, field: str, kind: str) -> None:
    body = {"field_name": field, "field_schema": kind}
    response = httpx.put(f"{url}/index?wait=true", json=body, timeout=30)
    assert response.status_code == 200, (field, kind, response.text)


def _matching_ids(url: str, field: str, condition: dict[str, Any]) -> list[int]:
    """Ids of the points the filter on `field` matches (the key double-quoted, as Qdrant
    spells a key of characters other than letters, digits, `_` and `-`)."""
    body = {"filter": {"must": [{"key": f'"{field}"', **condition}]}, "limit": 100}
    response = httpx.post(f"{url}/points/scroll", json=body, timeout=30)
    assert response.status_code == 200, (field, response.text)
    return sorted(point["id"] for point in response.json()["result"]["points"])


def _plan(database_url: str, field: str, condition: dict[str, Any]) -> str:
    """EXPLAIN of the compiled filter on `field`, with sequential scans off so that an index
    that can serve it shows; the compiler writes standard string constants."""
    node = parse_qdrant_filter({"must": [{"key": f'"{field}"', **condition}]})
    where = compile_sql(node, indexed=frozenset({field})).where
    stmt = sa.select(points.c.point_id).where(where)
    dialect = postgresql.asyncpg.dialect()  # the service's: `%` is no parameter marker
    text = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    async def run() -> str:
        settings = {"standard_conforming_strings": "on", "enable_seqscan": "off", "jit": "off"}
        conn = await asyncpg.connect(database_url, server_settings=settings)
        try:
            return "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + text))
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_hostile_names_are_quoted_in_ddl(server: LiveServer, database_url: str, kind: str) -> None:
    value, condition, family = SCHEMAS[kind]
    url = _collection(server, f"hostile_{kind}", [{name: value} for name in HOSTILE] + [{}])
    for point_id, field in enumerate(HOSTILE):
        _create(url, field, kind)
        info = _schema(url)[field]
        assert (info["data_type"], info["points"]) == (kind, 1)
        if '"' not in field:  # a double quote has no spelling in a Qdrant key
            assert _matching_ids(url, field, condition) == [point_id]
            if family:  # the index is on the very key the compiler's hint reads
                index = f"ix_points_{family}_" + hashlib.sha256(field.encode()).hexdigest()[:16]
                assert index in _plan(database_url, field, condition), field
        response = httpx.delete(f"{url}/index/{quote(field, safe='')}?wait=true", timeout=30)
        assert response.status_code == 200, (field, response.text)
        assert field not in _schema(url)
    assert fetch_row(database_url, "SELECT to_regclass('points') IS NOT NULL")[0]
    assert _schema(url) == {}


def test_slashed_names_are_deleted_encoded_or_raw(server: LiveServer) -> None:
    url = _collection(server, "slashed", [{name: "v"} for name in SLASHED])
    for field in SLASHED:
        for spelling in (quote(field, safe=""), field):
            _create(url, field, "keyword")
            assert field in _schema(url)
            response = httpx.delete(f"{url}/index/{spelling}?wait=true", timeout=30)
            assert response.status_code == 200, (spelling, response.text)
            assert field not in _schema(url)
        _create(url, field, "keyword")  # as qdrant-client sends it (percent-encoded)
        QdrantClient(url=server.url, timeout=30).delete_payload_index("slashed", field, wait=True)
        assert field not in _schema(url)


def test_a_deleted_name_is_the_one_sent(server: LiveServer) -> None:
    """Names that routing alone would read as `a/b` (it joins segments with single slashes)
    each delete themselves only."""
    names = ["a/b", "a//b", "/a/b", "a/b/"]
    url = _collection(server, "lookalikes", [{name: "v"} for name in names])
    for field in names:
        _create(url, field, "keyword")
    for position, field in enumerate(names):
        response = httpx.delete(f"{url}/index/{quote(field, safe='')}?wait=true", timeout=30)
        assert response.status_code == 200, (field, response.text)
        assert sorted(_schema(url)) == sorted(names[position + 1 :])


def test_other_index_routes_are_not_shadowed(server: LiveServer) -> None:
    url = _collection(server, "routes", [{"k": "v"}])
    _create(url, "k", "keyword")
    assert "k" in _schema(url)
    assert httpx.delete(f"{url}/index/k", timeout=30).status_code == 200
    assert httpx.delete(f"{url}/index", timeout=30).status_code == 405
    missing = httpx.delete(f"{url}/index/missing", timeout=30)
    assert missing.status_code == 200, missing.text
    assert missing.json()["status"] == "ok"
    gone = httpx.delete(f"{server.url}/collections/nowhere/index/a%2Fb", timeout=30)
    assert gone.status_code == 404, gone.text
