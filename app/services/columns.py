"""Keeping each namespace's in-memory payload columns in step with its declared fields.

A declared payload index (Qdrant `PUT /collections/{c}/index`) is also kept in memory as a
column (app.index.payload_columns), so the search planner can answer filters on it without
a SQL round trip. This worker rebuilds a namespace's columns whenever the declared fields of
its collection change: on start-up, after its own `PUT`/`DELETE` index, and when the change
feed shows that another worker changed them.

A rebuild installs the new, empty columns first and reads the payloads second: a write that
commits after the read's snapshot is applied to the new columns by its worker or by the
feed, one that commits before is in the snapshot, and seqs settle any overlap. The columns
answer nothing until the read is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import payload_indexes, repository
from app.db.database import Database
from app.index.payload_columns import PayloadColumns
from app.index.registry import IndexRegistry
from app.models import Collection
from app.services.catalog import Catalog
from app.services.cpu import CpuPool

log = logging.getLogger(__name__)


class ColumnKeeper:
    def __init__(
        self, db: Database, catalog: Catalog, registry: IndexRegistry, cpu: CpuPool
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.registry = registry
        self.cpu = cpu

    async def sync(
        self,
        snapshot: AsyncConnection | None = None,
        collections: Iterable[Collection] | None = None,
    ) -> None:
        """Rebuild the columns of every namespace whose declared fields changed.

        `snapshot` is the start-up load's transaction, whose high-water marks the change
        feed continues from; without it every rebuild reads a snapshot of its own, taken
        after its new columns are installed. `collections` defaults to the catalog's; the
        change feed passes those it is about to publish.
        """
        if snapshot is None:
            async with self.db.connect() as conn:
                declared = await payload_indexes.declared_fields(conn)
        else:
            declared = await payload_indexes.declared_fields(snapshot)
        for collection in self.catalog.all() if collections is None else collections:
            fields = declared.get(collection.id, frozenset())
            for namespace_id in collection.namespaces.values():
                current = self.registry.columns(namespace_id)
                if (current.fields if current else frozenset()) != fields:
                    await self._rebuild(namespace_id, fields, snapshot)

    async def _rebuild(
        self, namespace_id: int, fields: frozenset[str], snapshot: AsyncConnection | None
    ) -> None:
        if not fields:
            self.registry.set_columns(namespace_id, None)
            return
        columns = PayloadColumns(fields)
        self.registry.set_columns(namespace_id, columns)
        if snapshot is None:
            async with self.db.snapshot() as fresh:
                points = await self._fill(fresh, namespace_id, columns)
        else:
            points = await self._fill(snapshot, namespace_id, columns)
        columns.ready = True
        log.info(
            "payload columns %s of namespace %d: %d points", sorted(fields), namespace_id, points
        )

    async def _fill(self, conn: AsyncConnection, namespace_id: int, columns: PayloadColumns) -> int:
        points = 0
        async for batch in repository.stream_payloads(conn, namespace_id):
            await self.cpu.run(columns.put, batch)
            points += len(batch)
        return points
