"""Wires the services of one worker together and loads its segments from PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from app.db import repository
from app.db.database import Database
from app.errors import NotReady
from app.index.registry import IndexRegistry
from app.services.catalog import Catalog
from app.services.collections import CollectionService
from app.services.cpu import CpuPool
from app.services.points import PointService
from app.services.search import SearchService
from app.settings import Settings

log = logging.getLogger(__name__)

LOAD_WAIT_SECONDS = 300.0


class Services:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.catalog = Catalog()
        self.registry = IndexRegistry(settings.exact_threshold, settings.build_threads)
        self.cpu = CpuPool(settings.search_threads)
        self.collections = CollectionService(db, self.catalog, self.registry)
        self.points = PointService(db, self.catalog, self.registry, self.cpu)
        self.search = SearchService(self.points)
        self.loaded = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Every segment is loaded and every graph that is due has been built."""
        return self.loaded.is_set() and not self.registry.busy(
            {ns for c in self.catalog.all() for ns in c.namespaces.values()}
        )

    async def wait_loaded(self) -> None:
        """Requests wait for the start-up load instead of seeing a half-loaded segment."""
        if self.loaded.is_set():
            return
        try:
            await asyncio.wait_for(self.loaded.wait(), LOAD_WAIT_SECONDS)
        except TimeoutError:
            raise NotReady("Service is still loading its indexes, retry later") from None

    async def start(self) -> None:
        await self.catalog.load(self.db)
        self.registry.start()

    async def load_segments(self) -> None:
        """Read every stored vector into memory; the indexer builds graphs as they fill."""
        started = time.perf_counter()
        total = 0
        for collection in self.catalog.all():
            for namespace_id in collection.namespaces.values():
                for vector_name, params in collection.config.vectors.items():
                    segment = self.registry.ensure(namespace_id, vector_name, params)
                    async with self.db.connect() as conn:
                        async for batch in repository.stream_vectors(
                            conn, namespace_id, vector_name
                        ):
                            vectors = np.frombuffer(
                                b"".join(v.vector for v in batch), dtype=np.float32
                            ).reshape(len(batch), params.size)
                            await self.cpu.run(
                                segment.upsert,
                                [v.id for v in batch],
                                vectors,
                                [v.seq for v in batch],
                            )
                            total += len(batch)
        self.loaded.set()
        self.registry.notify()
        log.info("loaded %d vectors in %.1f s", total, time.perf_counter() - started)

    async def stop(self) -> None:
        await asyncio.to_thread(self.registry.stop)
        await self.db.dispose()
