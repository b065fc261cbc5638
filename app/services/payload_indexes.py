"""Declared payload indexes (Qdrant `PUT /collections/{c}/index`): recorded in
`payload_indexes`, backed by a real PostgreSQL index where the compiled filters can use one,
and reported in collection info as `payload_schema`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from app import limits
from app.db import payload_indexes as sql
from app.db.database import Database
from app.errors import BadRequest
from app.services.catalog import Catalog
from app.services.columns import ColumnKeeper

SCHEMAS = frozenset({"keyword", "integer", "float", "bool", "geo", "text", "datetime", "uuid"})


def schema_type(schema: Any) -> str:
    """`"keyword"` or `{"type": "integer", …}` → the type name, checked."""
    kind = schema.get("type") if isinstance(schema, dict) else schema
    if not isinstance(kind, str) or kind not in SCHEMAS:
        raise BadRequest(
            f"Wrong input: field_schema must be one of {', '.join(sorted(SCHEMAS))} (got {kind!r})"
        )
    return kind


class PayloadIndexService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        on_commit: Callable[[], None],
        columns: ColumnKeeper,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.on_commit = on_commit
        self.columns = columns

    async def create(self, name: str, field: str, schema: Any) -> None:
        collection = self.catalog.get(name)
        kind = schema_type(schema)
        if not field:
            raise BadRequest("Wrong input: field_name must not be empty")
        limits.check_name("field_name", field)
        stored = schema if isinstance(schema, dict) else {"type": kind}
        async with self.db.begin() as conn:
            pg_indexes = await _create_pg_indexes(conn, field, kind)
            replaced = await sql.forget(conn, collection.id, field)
            await sql.declare(conn, collection.id, field, stored, ",".join(pg_indexes))
            await sql.drop_unused_indexes(conn, replaced)
        self.on_commit()
        await self.columns.sync()

    async def delete(self, name: str, field: str) -> None:
        collection = self.catalog.get(name)
        async with self.db.begin() as conn:
            await sql.drop_unused_indexes(conn, await sql.forget(conn, collection.id, field))
        self.on_commit()
        await self.columns.sync()

    async def schema(self, name: str, namespace: str = "") -> dict[str, dict[str, Any]]:
        """`payload_schema`: every declared field with its type and how many points hold it."""
        collection = self.catalog.get(name)
        namespace_id = collection.namespaces[namespace]
        async with self.db.connect() as conn:
            rows = await sql.declared(conn, collection.id)
            schema = {}
            for row in rows:
                info: dict[str, Any] = {"data_type": row.field_schema["type"]}
                if params := {k: v for k, v in row.field_schema.items() if k != "type"}:
                    info["params"] = params
                path = row.field_name.split(".")
                info["points"] = await sql.points_with_field(conn, namespace_id, path)
                schema[row.field_name] = info
            return schema


async def _create_pg_indexes(conn: AsyncConnection, field: str, kind: str) -> list[str]:
    """The PostgreSQL indexes that serve the compiled filters on a field of this type."""
    names = []
    if kind in sql.GIN_SCHEMAS:  # equality: containment tests
        await sql.ensure_payload_gin(conn)
        names.append(sql.PAYLOAD_GIN)
    if expression := await sql.ensure_expression_index(conn, field, kind):
        names.append(expression)  # ranges, datetimes, text, geo: app.db.functions
    return names
