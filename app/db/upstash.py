"""SQL of the Upstash dialect: namespaces by name, points in write order, `data` updates.

Like `repository`, every function takes an open connection so the calling service decides
what one transaction covers. Write order is `points.seq` (new on every write), served by the
`(namespace_id, seq)` index; id prefixes use `starts_with`, so `%` and `_` in a prefix are
plain characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.tables import namespaces, points


@dataclass(frozen=True, slots=True)
class OrderedId:
    """A point's id text and the seq of its last write (its place in `range` order)."""

    id_text: str
    seq: int


async def namespace_id(conn: AsyncConnection, collection_id: int, name: str) -> int | None:
    """The id of a namespace as PostgreSQL has it (authoritative, unlike a worker's catalog)."""
    stmt = sa.select(namespaces.c.id).where(
        namespaces.c.collection_id == collection_id, namespaces.c.name == name
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def delete_namespace(conn: AsyncConnection, namespace_id: int) -> None:
    """Drop a namespace; its points, vectors, tombstones and sessions go with it (CASCADE)."""
    await conn.execute(sa.delete(namespaces).where(namespaces.c.id == namespace_id))


async def rename_namespace(conn: AsyncConnection, namespace_id: int, new_name: str) -> None:
    stmt = sa.update(namespaces).where(namespaces.c.id == namespace_id).values(name=new_name)
    await conn.execute(stmt)


async def ids_in_order(
    conn: AsyncConnection,
    namespace_id: int,
    *,
    prefix: str = "",
    from_seq: int = 0,
    limit: int | None = None,
) -> list[OrderedId]:
    """Ids of the namespace's points whose id starts with `prefix`, oldest write first,
    from `from_seq` (inclusive)."""
    stmt = sa.select(points.c.point_id, points.c.seq).where(
        points.c.namespace_id == namespace_id, points.c.seq >= from_seq
    )
    if prefix:
        stmt = stmt.where(sa.func.starts_with(points.c.point_id, prefix))
    stmt = stmt.order_by(points.c.seq).limit(limit)
    return [OrderedId(row.point_id, row.seq) for row in await conn.execute(stmt)]


async def id_at(conn: AsyncConnection, namespace_id: int, position: int) -> str | None:
    """The id of the point at `position` in write order (None past the end)."""
    stmt = (
        sa.select(points.c.point_id)
        .where(points.c.namespace_id == namespace_id)
        .order_by(points.c.seq)
        .offset(position)
        .limit(1)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


_UPDATE_DATA = sa.text(
    """
    UPDATE points AS p SET data = u.data, seq = nextval('point_seq')
    FROM unnest(:point_ids, :datas) AS u(point_id, data)
    WHERE p.namespace_id = :namespace_id AND p.point_id = u.point_id
    RETURNING p.point_id, p.seq
    """
).bindparams(
    sa.bindparam("point_ids", type_=ARRAY(TEXT)),
    sa.bindparam("datas", type_=ARRAY(TEXT)),
)


async def update_data(
    conn: AsyncConnection, namespace_id: int, datas: dict[str, str | None]
) -> dict[str, int]:
    """Replace the `data` of existing points; returns point id -> new seq."""
    if not datas:
        return {}
    ids: Sequence[str] = list(datas)
    result = await conn.execute(
        _UPDATE_DATA,
        {"namespace_id": namespace_id, "point_ids": ids, "datas": list(datas.values())},
    )
    return {row.point_id: row.seq for row in result}
