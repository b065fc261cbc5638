"""SQL for declared payload indexes and the PostgreSQL indexes behind them.

The filter compiler adds a containment test (`payload @> …`) to every equality condition
(keyword, integer, bool and uuid matches, Upstash `=`, `IN`, `CONTAINS`), so one GIN index
over `points.payload` (`jsonb_path_ops`) serves every such field of every collection. It is
created with the first declared index that can use it and dropped with the last.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.tables import payload_indexes, points

PAYLOAD_GIN = "ix_points_payload_gin"
GIN_SCHEMAS = frozenset({"keyword", "integer", "bool", "uuid"})


async def declared(conn: AsyncConnection, collection_id: int) -> list[sa.Row]:
    stmt = sa.select(payload_indexes).where(payload_indexes.c.collection_id == collection_id)
    return list((await conn.execute(stmt.order_by(payload_indexes.c.field_name))).all())


async def declared_fields(conn: AsyncConnection) -> dict[int, frozenset[str]]:
    """Every collection's declared field names."""
    stmt = sa.select(payload_indexes.c.collection_id, payload_indexes.c.field_name)
    fields: dict[int, set[str]] = {}
    for row in await conn.execute(stmt):
        fields.setdefault(row.collection_id, set()).add(row.field_name)
    return {collection_id: frozenset(names) for collection_id, names in fields.items()}


async def declare(
    conn: AsyncConnection, collection_id: int, field: str, schema: dict[str, Any], pg_index: str
) -> None:
    stmt = sa.dialects.postgresql.insert(payload_indexes).values(
        collection_id=collection_id, field_name=field, field_schema=schema, pg_index_name=pg_index
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["collection_id", "field_name"],
            set_={"field_schema": schema, "pg_index_name": pg_index},
        )
    )


async def forget(conn: AsyncConnection, collection_id: int, field: str) -> bool:
    stmt = sa.delete(payload_indexes).where(
        payload_indexes.c.collection_id == collection_id, payload_indexes.c.field_name == field
    )
    return (await conn.execute(stmt)).rowcount > 0


async def ensure_payload_gin(conn: AsyncConnection) -> None:
    await conn.execute(
        sa.text(
            f"CREATE INDEX IF NOT EXISTS {PAYLOAD_GIN} ON points USING gin (payload jsonb_path_ops)"
        )
    )


async def drop_payload_gin_if_unused(conn: AsyncConnection) -> None:
    stmt = sa.select(sa.func.count()).where(payload_indexes.c.pg_index_name == PAYLOAD_GIN)
    if not await conn.scalar(stmt):
        await conn.execute(sa.text(f"DROP INDEX IF EXISTS {PAYLOAD_GIN}"))


async def points_with_field(conn: AsyncConnection, namespace_id: int, path: list[str]) -> int:
    """How many points hold a value at `path` (Qdrant's `payload_schema[...].points`)."""
    stmt = sa.select(sa.func.count()).where(
        points.c.namespace_id == namespace_id,
        points.c.payload.op("#>")(sa.literal(path, sa.ARRAY(sa.Text))).is_not(None),
    )
    return await conn.scalar(stmt) or 0
