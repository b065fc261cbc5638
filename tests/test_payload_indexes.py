"""Payload indexes: declared over HTTP, backed by a real PostgreSQL index that the compiled
filters use (EXPLAIN), reported in collection info, dropped again."""

from __future__ import annotations

import asyncio

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
