"""SQL for declared payload indexes and the PostgreSQL indexes behind them.

The filter compiler adds a containment test (`payload @> …`) to every equality condition
(keyword, integer, bool and uuid matches, Upstash `=`, `IN`, `CONTAINS`), so one GIN index
over `points.payload` (`jsonb_path_ops`) serves every such field of every collection. It is
created with the first declared index that can use it and dropped with the last.

Integer, float, datetime, text and geo fields with a plain key path get expression indexes
on what app.db.functions extracts from the value there, which the compiler's hints use:
one set per (path, family), shared by every collection that declares the field so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.functions import constant_chain_sql
from app.db.tables import payload_indexes, points
from app.models import plain_keys

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


async def forget(conn: AsyncConnection, collection_id: int, field: str) -> set[str]:
    """Remove a declaration; returns the PostgreSQL indexes it used."""
    stmt = (
        sa.delete(payload_indexes)
        .where(payload_indexes.c.collection_id == collection_id)
        .where(payload_indexes.c.field_name == field)
        .returning(payload_indexes.c.pg_index_name)
    )
    return _index_names([(await conn.execute(stmt)).scalar()])


async def used_by(conn: AsyncConnection, collection_id: int) -> set[str]:
    """The PostgreSQL indexes a collection's declared fields use."""
    stmt = sa.select(payload_indexes.c.pg_index_name).where(
        payload_indexes.c.collection_id == collection_id
    )
    return _index_names((await conn.execute(stmt)).scalars())


def _index_names(values: Iterable[str | None]) -> set[str]:
    """Index names from `pg_index_name` values (comma separated, possibly empty)."""
    return {name for value in values for name in (value or "").split(",") if name}


async def ensure_payload_gin(conn: AsyncConnection) -> None:
    await _ddl(
        conn,
        f"CREATE INDEX IF NOT EXISTS {PAYLOAD_GIN} ON points USING gin (payload jsonb_path_ops)",
    )


async def points_with_field(conn: AsyncConnection, namespace_id: int, path: list[str]) -> int:
    """How many points hold a value at `path` (Qdrant's `payload_schema[...].points`)."""
    stmt = sa.select(sa.func.count()).where(
        points.c.namespace_id == namespace_id,
        points.c.payload.op("#>")(sa.literal(path, sa.ARRAY(sa.Text))).is_not(None),
    )
    return await conn.scalar(stmt) or 0


# Expression indexes per field type: (name suffix, access method, function of the value).
EXPRESSION_INDEXES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "integer": (
        "num",
        [("min", "btree", "waypoint_num_min"), ("max", "btree", "waypoint_num_max")],
    ),
    "float": ("num", [("min", "btree", "waypoint_num_min"), ("max", "btree", "waypoint_num_max")]),
    "datetime": ("ts", [("min", "btree", "waypoint_ts_min"), ("max", "btree", "waypoint_ts_max")]),
    "text": (
        "text",
        [("words", "gin", "waypoint_words"), ("unicode", "btree", "waypoint_unicode")],
    ),
    "geo": ("geo", [("box", "gist", "waypoint_geo_box")]),
}
_SUFFIXES = {
    family: [suffix for suffix, _, _ in parts] for family, parts in EXPRESSION_INDEXES.values()
}


async def ensure_expression_index(conn: AsyncConnection, field: str, kind: str) -> str:
    """Create the expression indexes of a `kind` field (app.db.functions); returns their
    common name prefix, or "" when the type or the path has none."""
    keys = plain_keys(field)
    if not keys or constant_chain_sql(keys) is None or kind not in EXPRESSION_INDEXES:
        return ""  # the compiler's test too: no index where it writes no hint
    chain = await quoted_chain(conn, keys)
    family, parts = EXPRESSION_INDEXES[kind]
    name = f"ix_points_{family}_" + hashlib.sha256(field.encode()).hexdigest()[:16]
    for suffix, method, function in parts:
        await _ddl(
            conn,
            f"CREATE INDEX IF NOT EXISTS {_ident(conn, f'{name}_{suffix}')} ON points "
            f"USING {method} ({function}({chain}))",
        )
    return name


async def quoted_chain(conn: AsyncConnection, keys: Sequence[str]) -> str:
    """`payload -> 'a' -> 'b'` with each key quoted by PostgreSQL itself (`quote_literal`,
    which writes E'…' when a key holds a backslash): DDL takes no bound parameters, and
    text quoted by the server's own rules parses back to the same key whatever the
    connection's settings. The constants equal the compiler's, so its hints use the index."""
    quoted = sa.select(sa.func.quote_literal(sa.bindparam("key", type_=sa.Text)))
    literals = [await conn.scalar(quoted, {"key": key}) for key in keys]
    return "payload" + "".join(f" -> {literal}" for literal in literals)


async def _ddl(conn: AsyncConnection, statement: str) -> None:
    """Run DDL as written: `sa.text` would take a `:word` inside a quoted key for a bind
    parameter, and DDL has no parameters to bind."""
    await conn.exec_driver_sql(statement)


def _ident(conn: AsyncConnection, name: str) -> str:
    """An index name as a SQL identifier, quoted where PostgreSQL needs it."""
    return conn.dialect.identifier_preparer.quote(name)


async def drop_unused_indexes(conn: AsyncConnection, names: set[str]) -> None:
    """Drop the PostgreSQL indexes among `names` that no declared field uses any more."""
    used = _index_names((await conn.execute(sa.select(payload_indexes.c.pg_index_name))).scalars())
    for name in sorted(names - used):
        if name == PAYLOAD_GIN:
            await _ddl(conn, f"DROP INDEX IF EXISTS {PAYLOAD_GIN}")
        elif (family := name.split("_")[2]) in _SUFFIXES:
            indexes = ", ".join(_ident(conn, f"{name}_{suffix}") for suffix in _SUFFIXES[family])
            await _ddl(conn, f"DROP INDEX IF EXISTS {indexes}")
