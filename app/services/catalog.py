"""The worker's view of which collections, namespaces and aliases exist (loaded at start-up,
kept current by the collection service and the change feed), so a search needs no SQL to
find its segment. `get` resolves aliases, so every operation accepts an alias in place of a
collection name, as in Qdrant; `find` (creation, deletion, existence) takes real names."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import aliases, repository
from app.errors import CollectionNotFound
from app.models import Collection, config_from_json


class Catalog:
    def __init__(self) -> None:
        self._by_name: dict[str, Collection] = {}
        self._aliases: dict[str, str] = {}  # alias -> collection name
        # `repository.catalog_fingerprint` of what was last loaded; read before the rows, so
        # a change committed in between makes the next comparison differ, never agree
        self.fingerprint = ""

    async def load(self, conn: AsyncConnection, fingerprint: str | None = None) -> None:
        """Read the catalog; `fingerprint`: the one the caller read on `conn` just before."""
        if fingerprint is None:
            fingerprint = await repository.catalog_fingerprint(conn)
        self.fingerprint = fingerprint
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
        self._aliases = await aliases.select_aliases(conn)

    def get(self, name: str) -> Collection:
        """The collection called `name`, or the one the alias `name` points at."""
        found = self._by_name.get(name) or self._by_name.get(self._aliases.get(name, ""))
        if found is None:
            raise CollectionNotFound(name)
        return found

    def find(self, name: str) -> Collection | None:
        return self._by_name.get(name)

    def all(self) -> list[Collection]:
        return sorted(self._by_name.values(), key=lambda c: c.name)

    def add(self, collection: Collection) -> None:
        self._by_name[collection.name] = collection

    def remove(self, name: str) -> Collection | None:
        self._aliases = {a: c for a, c in self._aliases.items() if c != name}
        return self._by_name.pop(name, None)

    def aliases(self) -> dict[str, str]:
        """Alias -> collection name, sorted by alias."""
        return dict(sorted(self._aliases.items()))

    def set_aliases(self, mapping: dict[str, str]) -> None:
        self._aliases = dict(mapping)
