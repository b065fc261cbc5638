"""SQL for collection aliases: alternative names that resolve to one collection."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.tables import collection_aliases, collections


async def select_aliases(conn: AsyncConnection) -> dict[str, str]:
    """Alias name -> collection name, for every alias."""
    stmt = sa.select(collection_aliases.c.alias_name, collections.c.name).join(
        collections, collections.c.id == collection_aliases.c.collection_id
    )
    return {row.alias_name: row.name for row in await conn.execute(stmt)}


async def put_alias(conn: AsyncConnection, alias: str, collection_id: int) -> None:
    """Point `alias` at a collection (an existing alias is switched, as in Qdrant)."""
    stmt = insert(collection_aliases).values(alias_name=alias, collection_id=collection_id)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["alias_name"], set_={"collection_id": collection_id}
        )
    )


async def delete_alias(conn: AsyncConnection, alias: str) -> bool:
    stmt = sa.delete(collection_aliases).where(collection_aliases.c.alias_name == alias)
    return (await conn.execute(stmt)).rowcount > 0


async def lock_aliases(conn: AsyncConnection) -> None:
    """Serialise alias changes: a batch of actions is atomic against concurrent batches."""
    await conn.execute(sa.text("LOCK TABLE collection_aliases IN SHARE ROW EXCLUSIVE MODE"))
