"""The worker's view of which collections and namespaces exist (loaded at start-up, kept
current by the collection service), so a search needs no SQL to find its segment."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import repository
from app.errors import CollectionNotFound
from app.models import Collection, config_from_json


class Catalog:
    def __init__(self) -> None:
        self._by_name: dict[str, Collection] = {}

    async def load(self, conn: AsyncConnection) -> None:
        rows = await repository.select_collections(conn)
        ns_rows = await repository.select_namespaces(conn)
        by_id = {
            row.id: Collection(row.id, row.name, config_from_json(row.config), row.dialect)
            for row in rows
        }
        for ns in ns_rows:
            if ns.collection_id in by_id:
                by_id[ns.collection_id].namespaces[ns.name] = ns.id
        self._by_name = {c.name: c for c in by_id.values()}

    def get(self, name: str) -> Collection:
        try:
            return self._by_name[name]
        except KeyError:
            raise CollectionNotFound(name) from None

    def find(self, name: str) -> Collection | None:
        return self._by_name.get(name)

    def all(self) -> list[Collection]:
        return sorted(self._by_name.values(), key=lambda c: c.name)

    def add(self, collection: Collection) -> None:
        self._by_name[collection.name] = collection

    def remove(self, name: str) -> Collection | None:
        return self._by_name.pop(name, None)
